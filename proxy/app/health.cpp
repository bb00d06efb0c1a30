#include <array>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/app/worker.hpp"
#include "proxy/json/writer.hpp"

namespace pitstop::app {

namespace asio = boost::asio;
using std::chrono::steady_clock;

namespace {

struct Check {
  const char* name = "";
  bool done = false;
  bool ok = false;
  std::string error;
  double ms = 0;
};

// The checks run as their own coroutines: one that outlives the readiness deadline finishes in
// the background under its own client deadline instead of being cancelled mid-command.
struct Checks {
  explicit Checks(asio::io_context& ioc) : wake(ioc) {
    items[0].name = "redis_cache";
    items[1].name = "redis_queue";
    items[2].name = "mariadb";
  }
  std::array<Check, 3> items;
  int pending = 3;
  asio::steady_timer wake;
  void finish(Check& c, bool ok, std::string error, steady_clock::time_point started) {
    c.done = true;
    c.ok = ok;
    c.error = std::move(error);
    c.ms = std::chrono::duration<double, std::milli>(steady_clock::now() - started).count();
    if (--pending == 0) wake.cancel();
  }
};

asio::awaitable<void> check_redis(std::shared_ptr<Checks> checks, int i, redis::Client& client) {
  auto started = steady_clock::now();
  const std::string_view ping[] = {"PING"};
  auto r = co_await client.command(ping);
  if (!r) checks->finish(checks->items[i], false, r.error().message() + (client.last_error().empty() ? "" : " (" + client.last_error() + ")"), started);
  else if (r->is_error()) checks->finish(checks->items[i], false, r->str, started);
  else checks->finish(checks->items[i], true, {}, started);
}

asio::awaitable<void> check_db(std::shared_ptr<Checks> checks, int i, db::Pool& pool) {
  auto started = steady_clock::now();
  auto r = co_await pool.ping();
  if (!r) checks->finish(checks->items[i], false, r.error().code.message() + (r.error().message.empty() ? "" : ": " + r.error().message), started);
  else checks->finish(checks->items[i], true, {}, started);
}

}  // namespace

asio::awaitable<http::Response> readiness(Worker& w) {
  auto checks = std::make_shared<Checks>(w.ioc());
  checks->wake.expires_after(w.config().timeouts.readiness);
  asio::co_spawn(w.ioc(), check_redis(checks, 0, w.redis_cache()), asio::detached);
  asio::co_spawn(w.ioc(), check_redis(checks, 1, w.redis_queue()), asio::detached);
  asio::co_spawn(w.ioc(), check_db(checks, 2, w.primary()), asio::detached);
  if (checks->pending > 0) co_await checks->wake.async_wait(asio::as_tuple(asio::use_awaitable));

  bool all_ok = !w.draining();
  // Invalidation keeps the caches honest: without events, L1 is off; until the outbox relay has
  // caught up (after a start or a Redis failure), Redis is not used. Both make answers slower,
  // never wrong, but an instance in that state is not ready.
  const bool events = w.shared().trust.l1_usable();
  const bool relay = w.shared().trust.l2_trusted();
  std::string body;
  json::Writer out(body);
  out.begin_object();
  out.key("checks").begin_object();
  for (auto& c : checks->items) {
    if (!c.done) {
      c.error = "no answer within " + std::to_string(w.config().timeouts.readiness.count()) + " ms";
    }
    all_ok = all_ok && c.done && c.ok;
    out.key(c.name).begin_object().member("ok", c.done && c.ok);
    if (c.done) out.member("ms", c.ms);
    if (!(c.done && c.ok)) out.member("error", c.error);
    out.end_object();
  }
  out.key("invalidation_events").begin_object().member("ok", events).member("instance", w.shared().instance);
  if (!events) out.member("error", "not proven to hear invalidation events (subscription or queue Redis down, or slow): L1 is off");
  out.end_object();
  out.key("outbox_relay").begin_object().member("ok", relay);
  if (!relay) out.member("error", "the outbox relay has not caught up: Redis entries are not used");
  // Not a check: without the binary log, writes around pitstop wait for the relay's interval.
  if (const auto* binlog = w.shared().binlog)
    out.member("binlog", binlog->mode()).member("binlog_following", binlog->following()).member("binlog_wakes", binlog->wakes())
        .member("binlog_own_rows", binlog->own_rows());
  out.end_object();
  all_ok = all_ok && events && relay;
  // Which limiter decided last: "shared" (Redis), "local" (Redis unreachable) or "closed".
  // And how this worker's decisions were made: by a Redis round trip, from tokens Redis granted
  // ahead (a client far from its limit), locally, or by the over-limit shortcut.
  const auto& ls = w.limiter().stats();
  out.key("rate_limits").begin_object().member("ok", true).member("mode", w.limiter().mode());
  out.key("decisions").begin_object().member("redis", ls.redis).member("leased", ls.leased).member("local", ls.local);
  out.member("shortcut", ls.shortcut).member("refused", ls.refused).end_object();
  out.end_object();
  out.end_object();
  // Not checks: what the in-process cache holds, for sizing cache.l1_bytes.
  const auto l1 = w.shared().l1.stats();
  out.key("l1").begin_object();
  out.member("entries", static_cast<std::uint64_t>(l1.entries)).member("bytes", static_cast<std::uint64_t>(l1.bytes));
  out.member("max_bytes", static_cast<std::uint64_t>(w.config().cache.l1_bytes));
  out.member("hits", l1.hits).member("misses", l1.misses).member("evictions", l1.evictions);
  out.end_object();
  out.member("status", all_ok ? "ready" : (w.draining() ? "draining" : "unavailable"));
  out.end_object();
  http::Response r = http::json_response(all_ok ? 200 : 503, std::move(body));
  r.set_header("Cache-Control", "no-store");
  co_return r;
}

}  // namespace pitstop::app
