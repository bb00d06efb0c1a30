#include "proxy/limits/limits.hpp"

#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <algorithm>
#include <charconv>
#include <random>

namespace pitstop::limits {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

// KEYS[1]: the bucket's theoretical arrival time; KEYS[2]: the tokens workers hold, granted ahead
// of use (field: worker, value: "count:lapse_us"). ARGV: emission interval (µs), tolerance (µs),
// wanted n >= 1 (0: only renew what this worker holds), this worker's id, the tokens it still holds, their life (µs), how many of the
// n are used at once (1: a request's; 0: a grant ahead).
// Redis's clock decides, so instances with skewed clocks agree. Tokens held anywhere count as
// spent until they lapse (those used meanwhile included: the error is on the client's side of
// the bound, never over it). Grants as many of the n as fit (at least one, or none: refused),
// exactly as that many requests arriving at once would be. Returns {granted, remaining,
// retry_after_us, backlog_us}; remaining counts this worker's held tokens as spent.
const redis::Script kGcra(R"lua(
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3]) or 1
local mine = tonumber(ARGV[5]) or 0
local life = tonumber(ARGV[6]) or 1000000
local use = tonumber(ARGV[7]) or 1
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local held = mine
local leases = redis.call('HGETALL', KEYS[2])
for i = 1, #leases, 2 do
  if leases[i] ~= ARGV[4] then
    local n, lapse = string.match(leases[i + 1], '^(%d+):(%d+)$')
    if n and tonumber(lapse) > now then held = held + tonumber(n) else redis.call('HDEL', KEYS[2], leases[i]) end
  end
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local due = tat + held * interval
if want == 0 then
  -- Renewal: the worker keeps what it holds, counted as spent, for another life.
  if mine > 0 then
    redis.call('HSET', KEYS[2], ARGV[4], string.format('%d:%.0f', mine, now + life))
    redis.call('PEXPIRE', KEYS[2], math.floor(life / 1000) + 1000)
  end
  local left = 0
  if due - now <= tolerance then left = math.floor((tolerance - (due - now)) / interval) + 1 end
  return {0, left, 0, tat - now}
end
if due - now > tolerance then
  return {0, 0, due - tolerance - now, due - now}
end
local fit = math.floor((tolerance - (due - now)) / interval) + 1
local n = math.max(1, math.min(want, fit))
local new_tat = tat + n * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1000)
local keep = mine + n - use
if keep > 0 then
  redis.call('HSET', KEYS[2], ARGV[4], string.format('%d:%.0f', keep, now + life))
  redis.call('PEXPIRE', KEYS[2], math.floor(life / 1000) + 1000)
elseif #leases > 0 then
  redis.call('HDEL', KEYS[2], ARGV[4])
end
local backlog = new_tat + (held - mine + keep) * interval - now
local remaining = 0
if backlog <= tolerance then remaining = math.floor((tolerance - backlog) / interval) + 1 end
return {n, remaining, 0, new_tat - now}
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

Decision LocalLimiter::peek(const std::string& key, const Policy& p, std::int64_t now) {
  const std::int64_t interval = p.interval_us(), tolerance = p.tolerance_us();
  std::lock_guard lock(m_);
  auto it = tat_.find(key);
  const std::int64_t tat = it == tat_.end() ? now : std::max(it->second, now);
  if (tat - now > tolerance) return from_gcra(false, 0, tat - tolerance - now, tat - now);
  const std::int64_t backlog = tat - now;
  return from_gcra(true, (tolerance - backlog) / interval + 1, 0, backlog);
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
    : queue_(queue), local_(local), settings_(std::move(settings)) {
  std::random_device rd;
  id_ = std::to_string(rd()) + "-" + std::to_string(rd());
}

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
  // Tokens this worker was granted ahead: no Redis round trip.
  for (int round = 0;; ++round) {
    auto it = leases_.find(key);
    if (it == leases_.end()) break;
    Lease& l = it->second;
    if (round == 0) ++l.seen;
    if (l.tokens > 0 && steady_clock::now() < l.expires) {
      --l.tokens;
      ++stats_.leased;
      Decision d;
      d.remaining = l.remaining + l.tokens;
      d.reset_s = ceil_s(l.backlog_us - std::chrono::duration_cast<std::chrono::microseconds>(now - l.granted).count());
      d.source = Decision::Source::lease;
      // Topped up when half gone, renewed when half its life is: a client in steady use never
      // meets an empty or lapsed lease, however slow it is.
      if (!l.fetching && (l.tokens * 2 <= l.want || l.expires - steady_clock::now() < kLeaseLife / 2)) {
        begin_fetch(l, co_await asio::this_coro::executor);
        asio::co_spawn(co_await asio::this_coro::executor, prefetch(key, policy), asio::detached);
      }
      co_return d;
    }
    // A grant is on its way: wait for it rather than ask beside it (each grant is recorded in
    // Redis as this worker's holding, one at a time), then ask if it did not cover this one.
    if (!l.fetching || round >= 8) break;
    auto wake = l.wake;
    co_await wake->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return co_await ask(key, policy, now);
}

void Limiter::begin_fetch(Lease& l, const asio::any_io_executor& ex) {
  l.fetching = true;
  if (!l.wake) l.wake = std::make_shared<asio::steady_timer>(ex);
  l.wake->expires_at(steady_clock::time_point::max());
}

void Limiter::end_fetch(const std::string& key) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return;
  it->second.fetching = false;
  if (it->second.wake) it->second.wake->cancel();
}

// How many tokens to ask for: a second's worth at the client's rate over the last tenth of a
// second (prefetched at half, so a lease rarely runs dry), never more than an eighth of what
// Redis says is left (near its limit a client is decided request by request), one while slow.
std::int64_t Limiter::Lease::next_want(steady_clock::time_point now, std::int64_t redis_remaining) {
  if (now - window_start >= std::chrono::milliseconds(100)) {
    rate = seen * 1000 / std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(now - window_start).count());
    seen = 0;
    window_start = now;
  }
  return std::clamp<std::int64_t>(std::min<std::int64_t>(rate, redis_remaining / 8), 1, kMaxLease);
}

asio::awaitable<Decision> Limiter::ask(const std::string& key, const Policy& policy, steady_clock::time_point now) {
  Lease& l = leases_[key];
  if (l.window_start == steady_clock::time_point{}) {
    l.window_start = now;
    l.seen = 1;
  }
  // Here the worker holds no usable token: any left have lapsed, and Redis forgets them too.
  l.tokens = 0;
  const std::int64_t want = l.want;
  // A lease is asked for by one request at a time (the others wait in check()); single
  // decisions go side by side.
  const bool leasing = want > 1 && !l.fetching;
  if (leasing) begin_fetch(l, co_await asio::this_coro::executor);
  auto r = co_await eval(key, policy, want, 0, 1);
  if (leasing) end_fetch(key);
  Decision d;
  if (r) {
    ++stats_.redis;
    mode_ = "shared";
    const auto& e = r->elements;
    const std::int64_t granted = e[0].integer;
    d = from_gcra(granted > 0, e[1].integer, e[2].integer, e[3].integer);
    d.source = Decision::Source::redis;
    Lease& lease = leases_[key];  // the map may have grown while Redis was asked
    if (granted > 0) {
      lease.tokens += granted - 1;
      d.remaining += lease.tokens;
      lease.remaining = e[1].integer;
      lease.backlog_us = e[3].integer;
      lease.granted = now;
      // From before Redis was asked: the tokens lapse here no later than Redis stops counting them.
      lease.expires = now + kLeaseLife;
    }
    lease.want = lease.next_want(now, e[1].integer);
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
    leases_.erase(key);
    // Until the precise moment Redis would admit the next one, not the rounded Retry-After.
    if (settings_.shortcut && d.retry_after_us > 0) refused_until_[key] = now + std::chrono::microseconds(d.retry_after_us);
  }
  prune(now);
  co_return d;
}

asio::awaitable<void> Limiter::prefetch(std::string key, Policy policy) {
  std::int64_t want = 1, held = 0;
  const auto now = steady_clock::now();
  if (auto it = leases_.find(key); it != leases_.end()) {
    held = it->second.tokens;
    want = std::max<std::int64_t>(0, it->second.want - held);
  }
  auto r = co_await eval(key, policy, want, held, 0);
  end_fetch(key);
  auto it = leases_.find(key);
  if (it == leases_.end()) co_return;
  Lease& l = it->second;
  if (!r) co_return;  // the next request past the lease asks (and falls back) itself
  ++stats_.prefetches;
  const auto& e = r->elements;
  if (want == 0 && e[2].integer == 0) {
    l.expires = now + kLeaseLife;  // renewed
    l.remaining = e[1].integer;
  } else if (e[0].integer > 0) {
    l.tokens += e[0].integer;
    l.remaining = e[1].integer;
    l.backlog_us = e[3].integer;
    l.granted = now;
    l.expires = now + kLeaseLife;
  }
  l.want = l.next_want(now, e[1].integer);
}

asio::awaitable<std::optional<redis::Reply>> Limiter::eval(const std::string& key, const Policy& policy, std::int64_t want,
                                                           std::int64_t held, int use) {
  const std::string interval = std::to_string(policy.interval_us());
  const std::string tolerance = std::to_string(policy.tolerance_us());
  const std::string n = std::to_string(want);
  const std::string mine = std::to_string(held);
  const std::string life = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(kLeaseLife).count());
  const std::string leases = key + ":held";
  const std::string_view keys[] = {key, leases};
  const std::string used = std::to_string(use);
  const std::string_view args[] = {interval, tolerance, n, id_, mine, life, used};
  auto r = co_await queue_.eval(kGcra, keys, args);
  if (!r || r->type != redis::Reply::Type::array || r->elements.size() != 4) co_return std::nullopt;
  co_return std::move(*r);
}

void Limiter::prune(steady_clock::time_point now) {
  if (now - leases_pruned_ < std::chrono::seconds(10)) return;
  std::erase_if(leases_, [&](const auto& kv) { return !kv.second.fetching && now - kv.second.window_start > std::chrono::seconds(10); });
  leases_pruned_ = now;
}

}  // namespace pitstop::limits
