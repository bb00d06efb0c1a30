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

std::size_t Entry::bytes() const {
  std::size_t n = sizeof(Entry) + key.size() + content_type.size() + etag.size() + body.size() + 64;
  for (const auto& t : tags) n += t.size() + 32;
  return n;
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
  std::mutex m;
  std::list<EntryPtr> lru;  // most recent first
  std::unordered_map<std::string_view, std::list<EntryPtr>::iterator, Hash, std::equal_to<>> index;
  std::unordered_map<std::string, std::vector<const Entry*>, Hash, std::equal_to<>> tags;
  std::size_t bytes = 0;
  std::size_t max_bytes = 0;
  Stats stats;

  void unlink(std::list<EntryPtr>::iterator it) {
    const Entry* e = it->get();
    for (const auto& t : e->tags) {
      auto ti = tags.find(t);
      if (ti == tags.end()) continue;
      auto& v = ti->second;
      v.erase(std::remove(v.begin(), v.end(), e), v.end());
      if (v.empty()) tags.erase(ti);
    }
    index.erase(std::string_view(e->key));
    bytes -= e->bytes();
    lru.erase(it);
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
  if ((*it->second)->dead(now)) {
    s.unlink(it->second);
    ++s.stats.misses;
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  ++s.stats.hits;
  return *it->second;
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
  s.lru.push_front(std::move(e));
  const Entry* raw = s.lru.front().get();
  s.index.emplace(std::string_view(raw->key), s.lru.begin());
  for (const auto& t : raw->tags) s.tags[t].push_back(raw);
  s.bytes += size;
  ++s.stats.inserts;
}

void L1::erase(std::string_view key) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.m);
  if (auto it = s.index.find(key); it != s.index.end()) s.unlink(it->second);
}

std::size_t L1::invalidate_tag(std::string_view tag) {
  std::size_t n = 0;
  for (auto& sp : shards_) {
    Shard& s = *sp;
    std::lock_guard lock(s.m);
    auto ti = s.tags.find(tag);
    if (ti == s.tags.end()) continue;
    auto victims = ti->second;  // unlink edits the tag lists
    for (const Entry* e : victims) {
      if (auto it = s.index.find(std::string_view(e->key)); it != s.index.end()) {
        s.unlink(it->second);
        ++n;
      }
    }
  }
  return n;
}

void L1::clear() {
  for (auto& sp : shards_) {
    std::lock_guard lock(sp->m);
    sp->index.clear();
    sp->tags.clear();
    sp->lru.clear();
    sp->bytes = 0;
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
  }
  return total;
}

}  // namespace pitstop::cache
