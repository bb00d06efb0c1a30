#include "proxy/cache/cache.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <list>

namespace pitstop::cache {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t Entry::ttl_left_s(std::int64_t now) const {
  std::int64_t left = expires_ms() - now;
  // Round towards "less fresh": 999 ms left is 0 s, 1 ms past is -1 s.
  return left >= 0 ? left / 1000 : -((-left + 999) / 1000);
}

namespace {
// What a string costs beyond its object: glibc's 16-byte chunk header, rounded to 16; nothing
// for short strings, which live in the object.
std::size_t heap(const std::string& s) { return s.capacity() <= 15 ? 0 : (s.capacity() + 1 + 16 + 15) / 16 * 16; }
}  // namespace

// Resident memory, not payload: L1 is bounded by this, and the bound is what the process's
// resident size is checked against. Measured under bench/compare's erp-mix (answers with up to
// ~1,500 tags), counting payload alone undercounted by about half.
std::size_t Entry::bytes() const {
  // The entry with its shared_ptr control block, and L1's list node, key index and id index.
  std::size_t n = sizeof(Entry) + 32 + 200;
  n += heap(key) + heap(content_type) + heap(etag) + heap(body);
  n += tags.capacity() * sizeof(std::string) + tag_hashes.capacity() * sizeof(std::uint64_t);
  // Each tag: its string, and its id (with slack) and share of a node in L1's tag index.
  for (const auto& t : tags) n += heap(t) + 48;
  return n;
}

std::uint64_t tag_hash(std::string_view tag) { return std::hash<std::string_view>{}(tag); }

void hash_tags(Entry& e) {
  e.tag_hashes.clear();
  e.tag_hashes.reserve(e.tags.size());
  for (const auto& t : e.tags) e.tag_hashes.push_back(tag_hash(t));
}

std::string strong_etag(std::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned i = 0; i < 16; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xF]);
  }
  out.push_back('"');
  return out;
}

bool etag_matches(std::string_view header, std::string_view etag) {
  auto opaque = [](std::string_view t) {
    if (t.substr(0, 2) == "W/") t.remove_prefix(2);
    return t;
  };
  const std::string_view mine = opaque(etag);
  std::size_t i = 0;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',' || header[i] == '\t')) ++i;
    if (i >= header.size()) break;
    if (header[i] == '*') return true;
    std::size_t start = i;
    if (header.substr(i, 2) == "W/") i += 2;
    if (i < header.size() && header[i] == '"') {
      auto close = header.find('"', i + 1);
      if (close == std::string_view::npos) return false;
      if (opaque(header.substr(start, close + 1 - start)) == mine) return true;
      i = close + 1;
    } else {
      // Not a valid entity-tag: skip to the next comma.
      auto comma = header.find(',', i);
      i = comma == std::string_view::npos ? header.size() : comma + 1;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Codec

namespace {

constexpr char kMagic[4] = {'P', 'S', 'E', '1'};
constexpr std::size_t kMaxTags = 100000;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_i64(std::string& out, std::int64_t v) {
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

struct Reader {
  std::string_view in;
  bool ok = true;
  std::uint64_t uint(int bytes) {
    if (!ok || in.size() < static_cast<std::size_t>(bytes)) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[static_cast<std::size_t>(i)])) << (8 * i);
    in.remove_prefix(static_cast<std::size_t>(bytes));
    return v;
  }
  std::string str() {
    auto n = uint(4);
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

}  // namespace

std::string encode(const Entry& e) {
  std::string out;
  out.reserve(e.bytes());
  out.append(kMagic, 4);
  put_u32(out, e.status);
  put_i64(out, e.stored_ms);
  put_i64(out, e.ttl_ms);
  put_i64(out, e.swr_ms);
  put_i64(out, e.sie_ms);
  put_str(out, e.key);
  put_str(out, e.content_type);
  put_str(out, e.etag);
  put_str(out, e.body);
  put_u32(out, static_cast<std::uint32_t>(e.tags.size()));
  for (const auto& t : e.tags) put_str(out, t);
  return out;
}

boost::system::result<Entry> decode(std::string_view bytes) {
  const auto bad = make_error_code(boost::system::errc::illegal_byte_sequence);
  if (bytes.size() < 4 || std::memcmp(bytes.data(), kMagic, 4) != 0) return bad;
  Reader r{bytes.substr(4)};
  Entry e;
  e.status = static_cast<unsigned>(r.uint(4));
  e.stored_ms = static_cast<std::int64_t>(r.uint(8));
  e.ttl_ms = static_cast<std::int64_t>(r.uint(8));
  e.swr_ms = static_cast<std::int64_t>(r.uint(8));
  e.sie_ms = static_cast<std::int64_t>(r.uint(8));
  e.key = r.str();
  e.content_type = r.str();
  e.etag = r.str();
  e.body = r.str();
  auto ntags = r.uint(4);
  if (!r.ok || ntags > kMaxTags) return bad;
  for (std::uint64_t i = 0; i < ntags && r.ok; ++i) e.tags.push_back(r.str());
  if (!r.ok || !r.in.empty()) return bad;
  hash_tags(e);
  if (e.status < 100 || e.status > 599 || e.ttl_ms < 0 || e.swr_ms < 0 || e.sie_ms < 0) return bad;
  return e;
}

// ---------------------------------------------------------------------------------------------
// L1

namespace {
struct Hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
}  // namespace

struct L1::Shard {
  struct Slot {
    EntryPtr e;
    std::uint64_t id;
  };
  std::mutex m;
  std::list<Slot> lru;  // most recent first
  std::unordered_map<std::string_view, std::list<Slot>::iterator, Hash, std::equal_to<>> index;
  std::unordered_map<std::uint64_t, std::list<Slot>::iterator> by_id;
  // Tag hash -> ids of the entries carrying it (tag_hash: a collision only drops an extra entry,
  // never keeps a stale one). Removing an entry leaves its ids behind instead of searching every
  // tag's list (an answer can carry thousands of tags, a tag sit in thousands of answers): the
  // dead ids are skipped when a tag is invalidated and swept out once they outnumber the live.
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> tags;
  std::size_t tag_refs = 0;   // ids in `tags`, dead ones included
  std::size_t live_refs = 0;  // tags of the entries present
  std::uint64_t next_id = 0;
  std::size_t bytes = 0;
  std::size_t max_bytes = 0;
  Stats stats;

  void unlink(std::list<Slot>::iterator it) {
    const Entry* e = it->e.get();
    live_refs -= e->tags.size();
    index.erase(std::string_view(e->key));
    by_id.erase(it->id);
    bytes -= e->bytes();
    lru.erase(it);
  }

  void link(EntryPtr e) {
    const std::uint64_t id = ++next_id;
    lru.push_front(Slot{std::move(e), id});
    const Entry* raw = lru.front().e.get();
    index.emplace(std::string_view(raw->key), lru.begin());
    by_id.emplace(id, lru.begin());
    for (std::size_t i = 0; i < raw->tags.size(); ++i) tags[hash_of(*raw, i)].push_back(id);
    tag_refs += raw->tags.size();
    live_refs += raw->tags.size();
    bytes += raw->bytes();
    if (tag_refs > 2 * live_refs + 4096) sweep();
  }

  void sweep() {
    tag_refs = 0;
    for (auto it = tags.begin(); it != tags.end();) {
      auto& ids = it->second;
      std::erase_if(ids, [&](std::uint64_t id) { return !by_id.count(id); });
      tag_refs += ids.size();
      if (ids.empty()) it = tags.erase(it);
      else ++it;
    }
  }

  std::size_t invalidate(std::uint64_t h) {
    auto ti = tags.find(h);
    if (ti == tags.end()) return 0;
    const std::vector<std::uint64_t> ids = std::move(ti->second);
    tags.erase(ti);
    tag_refs -= ids.size();
    std::size_t n = 0;
    for (std::uint64_t id : ids) {
      if (auto it = by_id.find(id); it != by_id.end()) {
        unlink(it->second);
        ++n;
      }
    }
    return n;
  }

  static std::uint64_t hash_of(const Entry& e, std::size_t i) {
    return e.tag_hashes.size() == e.tags.size() ? e.tag_hashes[i] : tag_hash(e.tags[i]);
  }
};

L1::L1(std::size_t max_bytes, std::size_t shards) : max_bytes_(max_bytes) {
  shards = std::max<std::size_t>(1, shards);
  for (std::size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->max_bytes = max_bytes / shards;
  }
}

L1::~L1() = default;

L1::Shard& L1::shard_for(std::string_view key) { return *shards_[Hash{}(key) % shards_.size()]; }

EntryPtr L1::get(std::string_view key, std::int64_t now) {
  if (!enabled()) return nullptr;
  Shard& s = shard_for(key);
  std::lock_guard lock(s.m);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    ++s.stats.misses;
    return nullptr;
  }
  if (it->second->e->dead(now)) {
    s.unlink(it->second);
    ++s.stats.misses;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  ++s.stats.hits;
  return it->second->e;
}

void L1::put(EntryPtr e) { put_if(std::move(e), nullptr); }

void L1::put_if(EntryPtr e, const std::function<bool()>& still_valid) {
  if (!enabled() || !e) return;
  Shard& s = shard_for(e->key);
  const std::size_t size = e->bytes();
  if (size > s.max_bytes) return;
  std::lock_guard lock(s.m);
  if (still_valid && !still_valid()) return;
  if (auto it = s.index.find(std::string_view(e->key)); it != s.index.end()) s.unlink(it->second);
  while (s.bytes + size > s.max_bytes && !s.lru.empty()) {
    s.unlink(std::prev(s.lru.end()));
    ++s.stats.evictions;
  }
  s.link(std::move(e));
  ++s.stats.inserts;
}

void L1::erase(std::string_view key) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.m);
  if (auto it = s.index.find(key); it != s.index.end()) s.unlink(it->second);
}

std::size_t L1::invalidate_tag(std::string_view tag) {
  std::size_t n = 0;
  const std::uint64_t h = tag_hash(tag);
  for (auto& sp : shards_) {
    std::lock_guard lock(sp->m);
    n += sp->invalidate(h);
  }
  return n;
}

void L1::clear() {
  for (auto& sp : shards_) {
    std::lock_guard lock(sp->m);
    sp->index.clear();
    sp->by_id.clear();
    sp->tags.clear();
    sp->lru.clear();
    sp->bytes = 0;
    sp->tag_refs = sp->live_refs = 0;
  }
}

L1::Stats L1::stats() const {
  Stats total;
  for (const auto& sp : shards_) {
    std::lock_guard lock(sp->m);
    total.hits += sp->stats.hits;
    total.misses += sp->stats.misses;
    total.inserts += sp->stats.inserts;
    total.evictions += sp->stats.evictions;
    total.entries += sp->index.size();
    total.bytes += sp->bytes;
    total.tag_refs += sp->tag_refs;
  }
  return total;
}

}  // namespace pitstop::cache
