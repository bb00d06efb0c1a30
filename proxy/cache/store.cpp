#include "proxy/cache/store.hpp"

#include <openssl/evp.h>

namespace pitstop::cache {

namespace asio = boost::asio;
using boost::system::result;

namespace {

// KEYS: entry, n tag sets, n markers. ARGV: value, px, since (ms), n.
const redis::Script kStore(R"lua(
local n = tonumber(ARGV[4])
local since = tonumber(ARGV[3])
for i = 1, n do
  local mark = redis.call('GET', KEYS[1 + n + i])
  if mark and tonumber(mark) >= since then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 1, n do
  redis.call('SADD', KEYS[1 + i], KEYS[1])
  redis.call('PEXPIRE', KEYS[1 + i], ARGV[2], 'NX')
  redis.call('PEXPIRE', KEYS[1 + i], ARGV[2], 'GT')
end
return 1
)lua");

// KEYS: n tag sets, n markers. ARGV: n, marker px.
const redis::Script kInvalidate(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local deleted = 0
for i = 1, n do
  local entries = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #entries, 512 do
    deleted = deleted + redis.call('DEL', unpack(entries, j, math.min(j + 511, #entries)))
  end
  redis.call('DEL', KEYS[i])
  redis.call('SET', KEYS[n + i], now, 'PX', ARGV[2])
end
return deleted
)lua");

}  // namespace

Store::Store(redis::Client& client, std::string site) : client_(client), prefix_("pitstop:" + std::move(site) + ":") {}

std::string Store::entry_key(std::string_view key) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = prefix_ + "e:";
  for (unsigned i = 0; i < 16; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xF]);
  }
  return out;
}

std::string Store::tag_key(std::string_view tag) const { return prefix_ + "t:" + std::string(tag); }
std::string Store::marker_key(std::string_view tag) const { return prefix_ + "i:" + std::string(tag); }

asio::awaitable<result<Remote::Lookup>> Store::get(const std::string& key) {
  std::vector<redis::Command> cmds;
  cmds.push_back({"GET", entry_key(key)});
  cmds.push_back({"TIME"});
  auto r = co_await client_.pipeline(cmds);
  if (!r) co_return r.error();
  Lookup out;
  const auto& time = (*r)[1];
  if (time.type == redis::Reply::Type::array && time.elements.size() == 2)
    out.redis_ms = std::stoll(time.elements[0].str) * 1000 + std::stoll(time.elements[1].str) / 1000;
  const auto& value = (*r)[0];
  if (value.is_nil() || !value.is_string()) co_return out;
  auto e = decode(value.str);
  // A value that does not decode, or that belongs to another key (a hash collision, another
  // program), is a miss: never someone else's answer.
  if (!e || e->key != key) co_return out;
  out.entry = std::make_shared<const Entry>(std::move(*e));
  co_return out;
}

asio::awaitable<result<bool>> Store::put(const Entry& e, std::int64_t since_ms) {
  const std::int64_t live_ms = std::max<std::int64_t>(1, e.expires_ms() + std::max(e.swr_ms, e.sie_ms) - now_ms());
  std::vector<std::string> owned;
  owned.reserve(1 + 2 * e.tags.size());
  owned.push_back(entry_key(e.key));
  for (const auto& t : e.tags) owned.push_back(tag_key(t));
  for (const auto& t : e.tags) owned.push_back(marker_key(t));
  const std::string value = encode(e);
  const std::string px = std::to_string(live_ms);
  const std::string since = std::to_string(since_ms);
  const std::string n = std::to_string(e.tags.size());
  std::vector<std::string_view> keys(owned.begin(), owned.end());
  const std::string_view args[] = {value, px, since, n};
  auto r = co_await client_.eval(kStore, keys, args);
  // result<bool> would take an error_code for a bool: say which one is meant.
  if (!r) co_return result<bool>(boost::system::in_place_error, r.error());
  if (r->is_error()) co_return result<bool>(boost::system::in_place_error, make_error_code(boost::system::errc::io_error));
  co_return result<bool>(boost::system::in_place_value, r->integer == 1);
}

asio::awaitable<result<std::int64_t>> Store::invalidate(std::span<const std::string> tags) {
  if (tags.empty()) co_return std::int64_t{0};
  std::vector<std::string> owned;
  owned.reserve(2 * tags.size());
  for (const auto& t : tags) owned.push_back(tag_key(t));
  for (const auto& t : tags) owned.push_back(marker_key(t));
  std::vector<std::string_view> keys(owned.begin(), owned.end());
  const std::string n = std::to_string(tags.size());
  const std::string px = std::to_string(kMarkerMs);
  const std::string_view args[] = {n, px};
  auto r = co_await client_.eval(kInvalidate, keys, args);
  if (!r) co_return r.error();
  if (r->is_error()) co_return make_error_code(boost::system::errc::io_error);
  co_return r->integer;
}

}  // namespace pitstop::cache
