#include "proxy/invalidation/membership.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <random>
#include <set>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/log/log.hpp"

namespace pitstop::invalidation {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

// Renews the lease and pings the instance's own channel, in one atomic step: a writer's publish
// (which reads the leases) is either before both or after both.
// KEYS: members, inbox. ARGV: instance, lease (ms), ping.
const redis::Script kHeartbeat(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 10 * lease)
redis.call('PUBLISH', KEYS[2], ARGV[3])
return now
)lua");

}  // namespace

std::string new_instance_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !host[0]) std::snprintf(host, sizeof host, "host");
  // Spaces separate the fields of an acknowledgement.
  for (char* c = host; *c; ++c)
    if (*c == ' ') *c = '_';
  std::random_device rd;
  const std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) | rd();
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(r));
  return std::string(host) + ":" + std::to_string(::getpid()) + ":" + hex;
}

void Local::drop(const std::vector<std::string>& tags) const {
  log.record(tags);
  for (const auto& t : tags) {
    l1.invalidate_tag(t);
    if (permission_changes && t == kPermissionsTag) permission_changes->fetch_add(1, std::memory_order_acq_rel);
  }
}

// ---------------------------------------------------------------------------------------------
// Acks

struct Acks::Wait {
  std::string event_id;
  std::optional<std::set<std::string, std::less<>>> expected;  // unknown until published
  std::set<std::string, std::less<>> acked;
  asio::any_io_executor ex;
  std::shared_ptr<asio::steady_timer> timer;  // the writer's, touched only on `ex`

  bool complete() const {
    if (!expected) return false;
    return std::all_of(expected->begin(), expected->end(), [&](const std::string& m) { return acked.count(m) > 0; });
  }
  void wake() {
    if (timer) asio::post(ex, [t = timer] { t->cancel(); });
  }
};

std::shared_ptr<Acks::Wait> Acks::expect(const std::string& event_id) {
  auto w = std::make_shared<Wait>();
  w->event_id = event_id;
  std::lock_guard lock(m_);
  waits_[event_id] = w;
  return w;
}

void Acks::members(const std::shared_ptr<Wait>& w, std::vector<std::string> ids) {
  std::lock_guard lock(m_);
  w->expected.emplace(std::make_move_iterator(ids.begin()), std::make_move_iterator(ids.end()));
  if (w->complete()) w->wake();
}

void Acks::ack(std::string_view event_id, std::string_view member) {
  std::lock_guard lock(m_);
  auto it = waits_.find(std::string(event_id));
  if (it == waits_.end()) return;  // late: the writer stopped waiting
  Wait& w = *it->second;
  w.acked.emplace(member);
  if (w.complete()) w.wake();
}

void Acks::forget(const std::shared_ptr<Wait>& w) {
  std::lock_guard lock(m_);
  if (auto it = waits_.find(w->event_id); it != waits_.end() && it->second == w) waits_.erase(it);
}

std::size_t Acks::waiting() const {
  std::lock_guard lock(m_);
  return waits_.size();
}

asio::awaitable<std::vector<std::string>> Acks::wait(std::shared_ptr<Wait> w, steady_clock::time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(ex, deadline);
  bool done;
  {
    std::lock_guard lock(m_);
    done = w->complete();
    if (!done) {
      w->ex = ex;
      w->timer = timer;
    }
  }
  if (!done) co_await timer->async_wait(kToken);
  std::vector<std::string> missing;
  {
    std::lock_guard lock(m_);
    if (w->expected)
      for (const auto& m : *w->expected)
        if (!w->acked.count(m)) missing.push_back(m);
  }
  forget(w);
  co_return missing;
}

// ---------------------------------------------------------------------------------------------
// Membership

Membership::Membership(asio::io_context& ioc, redis::Client& commands, redis::Client& subscriber, Names names, std::string instance,
                       Timing timing, Local local, Acks& acks, std::function<void()> on_regained)
    : ioc_(ioc),
      commands_(commands),
      subscriber_(subscriber),
      names_(std::move(names)),
      instance_(std::move(instance)),
      inbox_(names_.inbox(instance_)),
      timing_(timing),
      local_(local),
      acks_(acks),
      on_regained_(std::move(on_regained)),
      timer_(ioc) {}

void Membership::start() {
  running_ = std::make_shared<bool>(true);
  subscriber_.subscribe(
      {names_.channel, inbox_}, [this](std::string_view channel, std::string_view payload) { on_message(channel, payload); },
      [this](bool subscribed) {
        if (subscribed) {
          log::info("invalidation events subscribed (instance ", instance_, ")");
          timer_.cancel();  // the first ping at once: L1 waits for it
          return;
        }
        // Events may be missed from now on: no L1 until a ping proves the feed again.
        local_.trust.fence();
        if (*running_) log::warn("invalidation events lost: L1 off until they are back");
      });
  asio::co_spawn(ioc_, heartbeats(), asio::detached);
}

void Membership::stop() {
  if (running_) *running_ = false;
  timer_.cancel();
}

asio::awaitable<void> Membership::leave() {
  stop();
  // Writers stop waiting for this instance once its lease is gone, so its L1 goes first.
  local_.trust.fence();
  const std::string_view zrem[] = {"ZREM", names_.members, instance_};
  co_await commands_.command(zrem);
}

asio::awaitable<void> Membership::heartbeats() {
  auto running = running_;
  const std::string lease = std::to_string(timing_.lease.count());
  while (*running) {
    const auto sent = steady_clock::now();
    // Only a subscribed instance holds a lease: one that is not could not acknowledge, and
    // writers would wait for it in vain.
    if (subscriber_.subscribed()) {
      const std::uint64_t seq = ++seq_;
      sent_.emplace(seq, sent);
      // A ping older than the fence proves nothing any more.
      while (!sent_.empty() && sent_.begin()->second + timing_.fence < sent) sent_.erase(sent_.begin());
      const std::string ping = "ping " + std::to_string(seq);
      const std::string_view keys[] = {names_.members, inbox_};
      const std::string_view args[] = {instance_, lease, ping};
      ++stats_.pings;
      co_await commands_.eval(kHeartbeat, keys, args);
    }
    if (!*running) break;
    timer_.expires_at(sent + timing_.heartbeat);
    co_await timer_.async_wait(kToken);
  }
}

void Membership::on_message(std::string_view channel, std::string_view payload) {
  if (channel == names_.channel) {
    on_event(payload);
    return;
  }
  if (channel != inbox_) return;
  if (payload.starts_with("ping ")) {
    std::uint64_t seq = 0;
    auto digits = payload.substr(5);
    if (std::from_chars(digits.data(), digits.data() + digits.size(), seq).ec == std::errc()) on_ping(seq);
  } else if (payload.starts_with("ack ")) {
    // "ack <instance> <event id>"
    auto rest = payload.substr(4);
    auto space = rest.find(' ');
    if (space == std::string_view::npos) return;
    ++stats_.acks_received;
    acks_.ack(rest.substr(space + 1), rest.substr(0, space));
  }
}

void Membership::on_event(std::string_view payload) {
  auto e = decode(payload);
  if (!e) return;
  ++stats_.events;
  local_.drop(e->tags);
  if (lag_) {
    // Clocks of other machines may be a little ahead: a negative lag counts as none; a time that
    // is not one (or hours off) is not counted.
    if (const auto at = parse_time(e->time)) {
      const double lag = std::chrono::duration<double>(std::chrono::system_clock::now() - *at).count();
      if (lag < 3600) lag_->observe(std::max(0.0, lag));
    }
  }
  // The writer could not delete the tags' Redis entries: the relay will, until then Redis is not
  // to be believed.
  if (!e->cleared) local_.trust.l2_failed();
  if (!e->from.empty() && e->from != instance_) asio::co_spawn(ioc_, acknowledge(e->from, e->id), asio::detached);
}

void Membership::on_ping(std::uint64_t seq) {
  auto it = sent_.find(seq);
  if (it == sent_.end()) return;
  const auto sent = it->second;
  sent_.erase(sent_.begin(), std::next(it));
  const auto now = steady_clock::now();
  if (sent + timing_.fence <= now) return;  // too late to prove anything
  bool regained = false;
  if (!local_.trust.l1_usable(now)) {
    // Trust lapsed (or never was): events may have been missed meanwhile, and writes that could
    // not be published at all are only in the outbox. L1 starts empty, Redis is suspect until
    // the relay has caught up.
    local_.trust.next_generation();
    local_.l1.clear();
    local_.trust.l2_failed();
    ++stats_.lapses;
    regained = true;
  }
  ++stats_.proofs;
  local_.trust.prove_until(sent + timing_.fence);
  if (regained) {
    if (stats_.lapses > 1) log::info("invalidation events proven again: L1 emptied and back in use");
    if (on_regained_) on_regained_();
  }
}

asio::awaitable<void> Membership::acknowledge(std::string to, std::string event_id) {
  const std::string channel = names_.inbox(to);
  const std::string message = "ack " + instance_ + " " + event_id;
  const std::string_view publish[] = {"PUBLISH", channel, message};
  ++stats_.acks_sent;
  co_await commands_.command(publish);
}

// ---------------------------------------------------------------------------------------------
// Barrier

Barrier::Barrier(Invalidator& invalidator, Acks& acks, Local local, std::string instance, Timing timing)
    : invalidator_(invalidator), acks_(acks), local_(local), instance_(std::move(instance)), timing_(timing) {}

asio::awaitable<Barrier::Report> Barrier::settle(Event e) {
  const auto started = steady_clock::now();
  Report report;
  local_.drop(e.tags);
  e.from = instance_;
  auto wait = acks_.expect(e.id);
  // Named: g++ 12 mishandles temporaries that live across a co_await.
  const std::function<void(bool)> after_delete = [&](bool cleared) {
    // This instance stops believing Redis before anything else can read it.
    if (!cleared) local_.trust.l2_failed();
    local_.drop(e.tags);
  };
  report.delivery = co_await invalidator_.deliver(e, after_delete);
  const Delivery& d = report.delivery;
  if (d.published) {
    std::vector<std::string> others;
    for (const auto& m : d.members)
      if (m != instance_) others.push_back(m);
    acks_.members(wait, std::move(others));
    report.unacknowledged = co_await acks_.wait(wait, d.published_at + timing_.fence_wait());
  } else {
    // Nobody could be told. Whoever hears the queue Redis no better than this instance runs out of
    // proof within the fence and empties L1 when it is back; the relay delivers the event then.
    acks_.forget(wait);
    asio::steady_timer t(co_await asio::this_coro::executor, steady_clock::now() + timing_.fence_wait());
    co_await t.async_wait(kToken);
  }
  report.waited = steady_clock::now() - started;
  co_return report;
}

}  // namespace pitstop::invalidation
