#include "proxy/cache/cache.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
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
// resident size is checked against (bench/compare prints both).
std::size_t Entry::bytes() const {
  // The entry with its shared_ptr control block, and L1's list node, key index and id index.
  std::size_t n = sizeof(Entry) + 32 + 200;
  n += heap(key) + heap(content_type) + heap(headers) + heap(etag) + heap(body);
  n += tags.capacity() * sizeof(std::string) + tag_hashes.capacity() * sizeof(std::uint64_t);
  for (const auto& t : tags) n += heap(t);
  // Each tag's node in L1's tag index (hash, id, chain: a 32-byte chunk) and bucket, with slack.
  return n + tag_count(*this) * 48;
}

std::size_t tag_count(const Entry& e) { return e.tag_hashes.empty() ? e.tags.size() : e.tag_hashes.size(); }

// FNV-1a with a final avalanche (MurmurHash3's fmix64): defined here rather than std::hash
// because the hashes travel in Redis entries between instances and builds.
std::uint64_t tag_hash(std::string_view tag) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : tag) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

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

// PSE2: tags travel as their hashes, all that a reader needs (PSE1 values read as misses).
// PSE3: entries carry header lines. An entry of another version reads as a miss.
constexpr char kMagic[4] = {'P', 'S', 'E', '3'};
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
  put_str(out, e.headers);
  put_str(out, e.etag);
  put_str(out, e.body);
  const std::size_t ntags = tag_count(e);
  put_u32(out, static_cast<std::uint32_t>(ntags));
  for (std::size_t i = 0; i < ntags; ++i) put_i64(out, static_cast<std::int64_t>(e.tag_hashes.empty() ? tag_hash(e.tags[i]) : e.tag_hashes[i]));
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
  e.headers = r.str();
  e.etag = r.str();
  e.body = r.str();
  auto ntags = r.uint(4);
  if (!r.ok || ntags > kMaxTags || r.in.size() != ntags * 8) return bad;
  e.tag_hashes.reserve(ntags);
  for (std::uint64_t i = 0; i < ntags; ++i) e.tag_hashes.push_back(r.uint(8));
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
    std::int64_t used_ms;  // last put or hit: eviction compares shards' least recently used
  };
  std::mutex m;
  std::list<Slot> lru;  // most recent first
  std::unordered_map<std::string_view, std::list<Slot>::iterator, Hash, std::equal_to<>> index;
  std::unordered_map<std::uint64_t, std::list<Slot>::iterator> by_id;
  // Tag hash -> id of an entry carrying it, one node per (tag, entry): 32 bytes, where a vector
  // per tag cost three times that for the many tags found in one answer only. Removing an entry
  // leaves its nodes behind instead of searching every tag (an answer can carry thousands, a
  // tag sit in thousands of answers): dead ids are skipped when a tag is invalidated and swept
  // out once they outnumber the live.
  std::unordered_multimap<std::uint64_t, std::uint64_t> tags;
  std::size_t live_refs = 0;  // tags of the entries present
  std::uint64_t next_id = 0;
  std::size_t bytes = 0;
  std::atomic<std::size_t>* total = nullptr;  // the L1's, shared by the shards
  Stats stats;

  void unlink(std::list<Slot>::iterator it) {
    const Entry* e = it->e.get();
    live_refs -= tag_count(*e);
    index.erase(std::string_view(e->key));
    by_id.erase(it->id);
    const std::size_t b = e->bytes();
    bytes -= b;
    total->fetch_sub(b, std::memory_order_relaxed);
    lru.erase(it);
  }

  std::uint64_t link(EntryPtr e, std::int64_t now) {
    const std::uint64_t id = ++next_id;
    lru.push_front(Slot{std::move(e), id, now});
    const Entry* raw = lru.front().e.get();
    index.emplace(std::string_view(raw->key), lru.begin());
    by_id.emplace(id, lru.begin());
    const std::size_t n = tag_count(*raw);
    for (std::size_t i = 0; i < n; ++i) tags.emplace(hash_of(*raw, i), id);
    live_refs += n;
    const std::size_t b = raw->bytes();
    bytes += b;
    total->fetch_add(b, std::memory_order_relaxed);
    if (tags.size() > 2 * live_refs + 4096) sweep();
    return id;
  }

  void sweep() {
    std::erase_if(tags, [&](const auto& kv) { return !by_id.count(kv.second); });
  }

  std::size_t invalidate(std::uint64_t h) {
    auto [first, last] = tags.equal_range(h);
    if (first == last) return 0;
    std::vector<std::uint64_t> ids;
    for (auto it = first; it != last; ++it) ids.push_back(it->second);
    tags.erase(first, last);
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
    return e.tag_hashes.empty() ? tag_hash(e.tags[i]) : e.tag_hashes[i];
  }
};

L1::L1(std::size_t max_bytes, std::size_t shards) : max_bytes_(max_bytes) {
  shards = std::max<std::size_t>(1, shards);
  for (std::size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->total = &total_;
  }
}

L1::~L1() = default;

std::size_t L1::shard_of(std::string_view key) const { return Hash{}(key) % shards_.size(); }

EntryPtr L1::get(std::string_view key, std::int64_t now) {
  if (!enabled()) return nullptr;
  Shard& s = *shards_[shard_of(key)];
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
  it->second->used_ms = now;
  ++s.stats.hits;
  return it->second->e;
}

void L1::put(EntryPtr e) { put_if(std::move(e), nullptr); }

void L1::put_if(EntryPtr e, const std::function<bool()>& still_valid) {
  if (!enabled() || !e) return;
  const std::size_t i = shard_of(e->key);
  Shard& s = *shards_[i];
  // One answer may not push out more than a quarter of the cache.
  if (e->bytes() > max_bytes_ / 4) return;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(s.m);
    if (still_valid && !still_valid()) return;
    if (auto it = s.index.find(std::string_view(e->key)); it != s.index.end()) s.unlink(it->second);
    id = s.link(std::move(e), now_ms());
    ++s.stats.inserts;
  }
  evict(i, id);
}

// The budget is the L1's, not a shard's: answers of very different sizes (a day's schedule is
// hundreds of kB) would otherwise crowd some shards while others sit empty. The victim is the
// least recently used of a few shards' least recently used entries (this one and three others
// in turn), which tracks a global LRU closely without ever holding two locks. Never the entry
// just put (`keep`: ties are common at millisecond resolution).
void L1::evict(std::size_t from, std::uint64_t keep) {
  const std::size_t n = shards_.size();
  while (total_.load(std::memory_order_relaxed) > max_bytes_) {
    const std::size_t hand = hand_.fetch_add(3, std::memory_order_relaxed);
    std::size_t victim = n;
    std::int64_t oldest = std::numeric_limits<std::int64_t>::max();
    for (std::size_t k = 0; k < std::min<std::size_t>(4, n); ++k) {
      const std::size_t c = k == 0 ? from : (hand + k) % n;
      Shard& s = *shards_[c];
      std::lock_guard lock(s.m);
      if (!s.lru.empty() && !(c == from && s.lru.back().id == keep) && s.lru.back().used_ms < oldest) {
        oldest = s.lru.back().used_ms;
        victim = c;
      }
    }
    // None in the sample: take any shard's.
    for (std::size_t c = 0; victim == n && c < n; ++c) {
      std::lock_guard lock(shards_[c]->m);
      if (!shards_[c]->lru.empty() && !(c == from && shards_[c]->lru.back().id == keep)) victim = c;
    }
    if (victim == n) return;
    Shard& s = *shards_[victim];
    std::lock_guard lock(s.m);
    if (s.lru.empty() || (victim == from && s.lru.back().id == keep)) continue;
    s.unlink(std::prev(s.lru.end()));
    ++s.stats.evictions;
  }
}

void L1::erase(std::string_view key) {
  Shard& s = *shards_[shard_of(key)];
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
    while (!sp->lru.empty()) sp->unlink(sp->lru.begin());
    sp->tags.clear();
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
    total.tag_refs += sp->tags.size();
  }
  return total;
}

}  // namespace pitstop::cache
