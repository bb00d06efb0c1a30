#include "proxy/limits/limits.hpp"

#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <charconv>

namespace pitstop::limits {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

// KEYS[1]: the bucket. ARGV: emission interval (µs), tolerance (µs). Redis's clock decides, so
// instances with skewed clocks agree. Returns {allowed, remaining, retry_after_us, backlog_us}.
const redis::Script kGcra(R"lua(
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
if tat - now > tolerance then
  return {0, 0, tat - tolerance - now, tat - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
local backlog = new_tat - now
local remaining = 0
if backlog <= tolerance then remaining = math.floor((tolerance - backlog) / interval) + 1 end
return {1, remaining, 0, backlog}
)lua");

std::int64_t ceil_s(std::int64_t us) { return us <= 0 ? 0 : (us + 999'999) / 1'000'000; }

Decision from_gcra(bool allowed, std::int64_t remaining, std::int64_t retry_us, std::int64_t backlog_us) {
  Decision d;
  d.allowed = allowed;
  d.remaining = remaining;
  d.retry_after_s = allowed ? 0 : std::max<std::int64_t>(1, ceil_s(retry_us));
  d.retry_after_us = allowed ? 0 : retry_us;
  d.reset_s = allowed ? ceil_s(backlog_us) : d.retry_after_s;
  return d;
}

std::int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string policy_field(const Policy& p) {
  return "\"" + p.name + "\";q=" + std::to_string(p.limit) + ";w=" + std::to_string(p.window_s);
}

std::string limit_field(const Policy& p, const Decision& d) {
  return "\"" + p.name + "\";r=" + std::to_string(d.remaining) + ";t=" + std::to_string(d.reset_s);
}

Decision LocalLimiter::decide(const std::string& key, const Policy& p, std::int64_t now) {
  const std::int64_t interval = p.interval_us(), tolerance = p.tolerance_us();
  std::lock_guard lock(m_);
  // Buckets that are whole again hold nothing worth keeping.
  if (now - pruned_us_ > 10'000'000) {
    std::erase_if(tat_, [&](const auto& kv) { return kv.second <= now; });
    pruned_us_ = now;
  }
  std::int64_t& tat = tat_[key];
  if (tat < now) tat = now;
  if (tat - now > tolerance) return from_gcra(false, 0, tat - tolerance - now, tat - now);
  tat += interval;
  const std::int64_t backlog = tat - now;
  const std::int64_t remaining = backlog <= tolerance ? (tolerance - backlog) / interval + 1 : 0;
  return from_gcra(true, remaining, 0, backlog);
}

bool TrustedProxies::add(std::string_view text, std::string& why) {
  std::string s(text);
  auto slash = s.find('/');
  std::string addr = s.substr(0, slash);
  boost::system::error_code ec;
  auto a = asio::ip::make_address(addr, ec);
  if (ec) {
    why = "\"" + s + "\" is not an IP address or network";
    return false;
  }
  unsigned prefix = a.is_v4() ? 32 : 128;
  if (slash != std::string::npos) {
    auto p = std::string_view(s).substr(slash + 1);
    auto r = std::from_chars(p.data(), p.data() + p.size(), prefix);
    if (r.ec != std::errc() || r.ptr != p.data() + p.size() || prefix > (a.is_v4() ? 32u : 128u)) {
      why = "\"" + s + "\" has a bad prefix length";
      return false;
    }
  }
  if (a.is_v4()) {
    std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
    v4_.emplace_back(a.to_v4().to_uint() & mask, prefix);
  } else {
    v6_.emplace_back(a.to_v6().to_bytes(), prefix);
  }
  return true;
}

bool TrustedProxies::trusted(const asio::ip::address& in) const {
  asio::ip::address a = in;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  if (a.is_v4()) {
    const std::uint32_t v = a.to_v4().to_uint();
    for (const auto& [net, prefix] : v4_) {
      std::uint32_t mask = prefix == 0 ? 0 : ~std::uint32_t{0} << (32 - prefix);
      if ((v & mask) == net) return true;
    }
    return false;
  }
  const auto bytes = a.to_v6().to_bytes();
  for (const auto& [net, prefix] : v6_) {
    unsigned bits = prefix;
    bool match = true;
    for (std::size_t i = 0; i < 16 && bits > 0 && match; ++i) {
      const unsigned take = std::min(bits, 8u);
      const unsigned char mask = static_cast<unsigned char>(0xFF << (8 - take));
      match = (bytes[i] & mask) == (net[i] & mask);
      bits -= take;
    }
    if (match) return true;
  }
  return false;
}

std::string TrustedProxies::client(const asio::ip::address& peer, std::string_view xff) const {
  if (!trusted(peer) || xff.empty()) return peer.to_string();
  // Right to left: each trusted hop vouches for the one before it; the first address no trusted
  // proxy added itself is the client. Anything unparsable ends the chain there.
  std::string last = peer.to_string();
  std::size_t end = xff.size();
  while (true) {
    auto comma = xff.rfind(',', end == 0 ? 0 : end - 1);
    std::size_t start = comma == std::string_view::npos ? 0 : comma + 1;
    std::string_view entry = xff.substr(start, end - start);
    while (!entry.empty() && (entry.front() == ' ' || entry.front() == '\t')) entry.remove_prefix(1);
    while (!entry.empty() && (entry.back() == ' ' || entry.back() == '\t')) entry.remove_suffix(1);
    boost::system::error_code ec;
    auto a = asio::ip::make_address(std::string(entry), ec);
    if (ec) return last;
    if (!trusted(a)) return a.to_string();
    last = a.to_string();
    if (comma == std::string_view::npos) return last;
    end = comma;
  }
}

Limiter::Limiter(redis::Client& queue, LocalLimiter& local, Settings settings)
    : queue_(queue), local_(local), settings_(std::move(settings)) {}

asio::awaitable<Decision> Limiter::check(const std::string& bucket, const Policy& policy) {
  const std::string key = "pitstop:" + settings_.site + ":rl:" + policy.name + ":" + bucket;
  const auto now = steady_clock::now();
  if (settings_.shortcut) {
    if (auto it = refused_until_.find(key); it != refused_until_.end()) {
      if (now < it->second) {
        ++stats_.shortcut;
        ++stats_.refused;
        Decision d = from_gcra(false, 0, std::chrono::duration_cast<std::chrono::microseconds>(it->second - now).count(), 0);
        d.source = Decision::Source::shortcut;
        co_return d;
      }
      refused_until_.erase(it);
    }
    if (now - pruned_ > std::chrono::seconds(10)) {
      std::erase_if(refused_until_, [&](const auto& kv) { return kv.second <= now; });
      pruned_ = now;
    }
  }
  const std::string interval = std::to_string(policy.interval_us());
  const std::string tolerance = std::to_string(policy.tolerance_us());
  const std::string_view keys[] = {key};
  const std::string_view args[] = {interval, tolerance};
  auto r = co_await queue_.eval(kGcra, keys, args);
  Decision d;
  if (r && r->type == redis::Reply::Type::array && r->elements.size() == 4) {
    ++stats_.redis;
    mode_ = "shared";
    d = from_gcra(r->elements[0].integer == 1, r->elements[1].integer, r->elements[2].integer, r->elements[3].integer);
    d.source = Decision::Source::redis;
  } else if (settings_.fail_closed) {
    mode_ = "closed";
    d.allowed = false;
    d.source = Decision::Source::closed;
    co_return d;
  } else {
    ++stats_.local;
    mode_ = "local";
    d = local_.decide(key, policy, steady_us());
    d.source = Decision::Source::local;
  }
  if (!d.allowed) {
    ++stats_.refused;
    // Until the precise moment Redis would admit the next one, not the rounded Retry-After.
    if (settings_.shortcut && d.retry_after_us > 0) refused_until_[key] = now + std::chrono::microseconds(d.retry_after_us);
  }
  co_return d;
}

}  // namespace pitstop::limits
