#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/config/urls.hpp"
#include "proxy/redis/client.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;
using pitstop::redis::Client;
using pitstop::redis::Reply;
namespace errc = pitstop::redis;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

pitstop::config::Redis settings(const std::string& url, std::chrono::milliseconds command_timeout = 1000ms) {
  pitstop::config::Redis r;
  std::string why;
  if (!pitstop::config::parse_redis_url(url, r, why)) throw std::runtime_error(why);
  r.command_timeout = command_timeout;
  r.connect_timeout = 1000ms;
  r.reconnect_max_backoff = 200ms;
  return r;
}

pitstop::config::Redis shared_cache() {
  auto r = pitstop::test::service_config().redis_cache;
  r.command_timeout = 2000ms;
  return r;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(kToken);
}

std::string unique_key(const std::string& what) {
  return "pitstop:test:" + std::to_string(::getpid()) + ":" + what;
}

// Retries PING until it answers or `limit` passes; returns how long that took.
asio::awaitable<std::chrono::milliseconds> until_ping(Client& c, std::chrono::milliseconds limit) {
  auto start = std::chrono::steady_clock::now();
  const std::string_view ping[] = {"PING"};
  while (std::chrono::steady_clock::now() - start < limit) {
    auto r = co_await c.command(ping);
    if (r && r->str == "PONG") break;
    co_await sleep_for(20ms);
  }
  co_return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

asio::awaitable<void> binary_safe(Client& c) {
  const std::string key = unique_key("binary");
  std::string value("a\0b\r\nc\x01\xff", 8);
  const std::string_view set[] = {"SET", key, value, "EX", "60"};
  auto r = co_await c.command(set);
  EXPECT_TRUE(r && r->str == "OK");
  const std::string_view get[] = {"GET", key};
  auto g = co_await c.command(get);
  EXPECT_TRUE(g);
  if (g) {
    EXPECT_EQ(g->type, Reply::Type::string);
    EXPECT_EQ(g->str, value);
  }
  const std::string missing_key = unique_key("missing");
  const std::string_view missing[] = {"GET", missing_key};
  auto m = co_await c.command(missing);
  EXPECT_TRUE(m && m->is_nil());
}

}  // namespace

TEST(RedisClient, CommandsAreBinarySafe) {
  asio::io_context ioc{1};
  Client c(ioc, shared_cache(), "test");
  c.start();
  pitstop::test::run(ioc, binary_safe(c));
}

namespace {
asio::awaitable<void> pipeline_in_order(Client& c) {
  const std::string key = unique_key("pipeline");
  std::vector<pitstop::redis::Command> cmds;
  cmds.push_back({"DEL", key});
  for (int i = 0; i < 100; ++i) cmds.push_back({"INCR", key});
  cmds.push_back({"EXPIRE", key, "60"});
  cmds.push_back({"HGET", key, "x"});  // WRONGTYPE: an error reply in the middle of a batch
  auto r = co_await c.pipeline(cmds);
  EXPECT_TRUE(r);
  if (!r) co_return;
  EXPECT_EQ(r->size(), cmds.size());
  for (int i = 1; i <= 100; ++i) EXPECT_EQ((*r)[static_cast<std::size_t>(i)].integer, i);
  EXPECT_TRUE(r->back().is_error());
  EXPECT_NE(r->back().str.find("WRONGTYPE"), std::string::npos);
}
}  // namespace

TEST(RedisClient, PipelineRepliesComeInOrderAndErrorsAreValues) {
  asio::io_context ioc{1};
  Client c(ioc, shared_cache(), "test");
  c.start();
  pitstop::test::run(ioc, pipeline_in_order(c));
}

namespace {
asio::awaitable<void> one_worker(Client& c, int i, int& ok) {
  const std::string key = unique_key("conc:" + std::to_string(i));
  const std::string value = "v" + std::to_string(i * 7919);
  const std::string_view set[] = {"SET", key, value, "EX", "60"};
  const std::string_view get[] = {"GET", key};
  auto s = co_await c.command(set);
  auto g = co_await c.command(get);
  if (s && g && g->str == value) ++ok;
}

asio::awaitable<void> many_in_flight(Client& c, int n, int& ok) {
  for (int i = 0; i < n; ++i) asio::co_spawn(co_await asio::this_coro::executor, one_worker(c, i, ok), asio::detached);
  for (int waited = 0; ok < n && waited < 500; ++waited) co_await sleep_for(10ms);
}
}  // namespace

TEST(RedisClient, HundredsOfConcurrentCommandsShareOneConnection) {
  asio::io_context ioc{1};
  Client c(ioc, shared_cache(), "test");
  c.start();
  int ok = 0;
  pitstop::test::run(ioc, many_in_flight(c, 800, ok));
  EXPECT_EQ(ok, 800);
  EXPECT_EQ(c.stats().connects, 1u);
  EXPECT_EQ(c.stats().commands, 1600u);
}

namespace {
asio::awaitable<void> deadline_then_recover(Client& c) {
  // BLPOP blocks on the server for 2 s: far past the 150 ms deadline.
  const std::string key = unique_key("never");
  const std::string_view blpop[] = {"BLPOP", key, "2"};
  auto started = std::chrono::steady_clock::now();
  auto r = co_await c.command(blpop);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(r);
  if (!r) {
    EXPECT_EQ(r.error(), pitstop::redis::errc::timeout);
  }
  EXPECT_LT(took, 1000ms);
  EXPECT_GE(took, 140ms);
  EXPECT_FALSE(c.connected());
  auto recovered = co_await until_ping(c, 3000ms);
  EXPECT_LT(recovered, 3000ms);
  EXPECT_TRUE(c.connected());
  co_await binary_safe(c);
}
}  // namespace

TEST(RedisClient, ALateReplyDropsTheConnectionAndTheClientRecovers) {
  asio::io_context ioc{1};
  auto s = shared_cache();
  s.command_timeout = 150ms;
  Client c(ioc, s, "test");
  c.start();
  pitstop::test::run(ioc, deadline_then_recover(c));
  EXPECT_EQ(c.stats().timeouts, 1u);
  EXPECT_GE(c.stats().connects, 2u);
}

namespace {
struct Tally {
  int ok = 0;
  int failed = 0;
  int running = 0;
};

asio::awaitable<void> hammer(Client& c, int id, Tally& t, const bool& stop) {
  ++t.running;
  const std::string key = "hammer:" + std::to_string(id);
  const std::string_view incr[] = {"INCR", key};
  while (!stop) {
    auto r = co_await c.command(incr);
    if (r && !r->is_error()) ++t.ok;
    else ++t.failed;
    co_await sleep_for(5ms);
  }
  --t.running;
}

asio::awaitable<void> restart_scenario(Client& c, pitstop::test::RedisServer& server) {
  Tally t;
  bool stop = false;
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < 300; ++i) asio::co_spawn(ex, hammer(c, i, t, stop), asio::detached);
  co_await sleep_for(300ms);
  const int ok_before = t.ok;
  EXPECT_GT(ok_before, 300);
  EXPECT_EQ(t.failed, 0);

  server.stop();  // SIGKILL with hundreds of commands in flight
  co_await sleep_for(500ms);
  EXPECT_GT(t.failed, 0);
  EXPECT_FALSE(c.connected());

  server.start();
  auto recovered = co_await until_ping(c, 5000ms);
  EXPECT_LT(recovered, 5000ms);
  const int ok_after_restart = t.ok;
  const int failed_after_restart = t.failed;
  co_await sleep_for(300ms);
  EXPECT_GT(t.ok - ok_after_restart, 300);
  EXPECT_EQ(t.failed, failed_after_restart) << "commands still failing after recovery";
  stop = true;
  for (int i = 0; i < 200 && t.running > 0; ++i) co_await sleep_for(10ms);
  EXPECT_EQ(t.running, 0);
}
}  // namespace

TEST(RedisClient, ServerKilledWithCommandsInFlightThenRecovers) {
  pitstop::test::RedisServer server;
  asio::io_context ioc{1};
  Client c(ioc, settings(server.url(), 500ms), "test");
  c.start();
  pitstop::test::run(ioc, restart_scenario(c, server));
}

namespace {
asio::awaitable<void> fails_fast(Client& c, std::chrono::milliseconds limit) {
  const std::string_view ping[] = {"PING"};
  for (int i = 0; i < 3; ++i) {
    auto started = std::chrono::steady_clock::now();
    auto r = co_await c.command(ping);
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error(), pitstop::redis::errc::not_connected) << r.error().message();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, limit);
  }
  EXPECT_FALSE(c.last_error().empty());
}
}  // namespace

TEST(RedisClient, UnreachableServerFailsFastWithAReason) {
  asio::io_context ioc{1};
  Client c(ioc, settings("redis://127.0.0.1:" + std::to_string(pitstop::test::free_port())), "test");
  c.start();
  pitstop::test::run(ioc, fails_fast(c, 1100ms));
}

namespace {
asio::awaitable<void> stop_during_command(Client& c, std::chrono::steady_clock::time_point& finished) {
  const std::string_view ping[] = {"PING"};
  auto r = co_await c.command(ping);
  EXPECT_FALSE(r);
  finished = std::chrono::steady_clock::now();
}
asio::awaitable<void> stopper(Client& c) {
  co_await sleep_for(200ms);
  c.stop();
}
}  // namespace

TEST(RedisClient, StopFailsCommandsInFlight) {
  // A server that accepts and never answers: the command would wait for its whole deadline.
  pitstop::test::BlackHole hole;
  asio::io_context ioc{1};
  Client c(ioc, settings("redis://127.0.0.1:" + std::to_string(hole.port()), 10000ms), "test");
  c.start();
  std::chrono::steady_clock::time_point finished{};
  auto started = std::chrono::steady_clock::now();
  asio::co_spawn(ioc, stopper(c), asio::detached);
  pitstop::test::run(ioc, stop_during_command(c, finished));
  EXPECT_LT(finished - started, 2000ms);
}

TEST(RedisClient, AuthenticatesAndSelectsTheDatabaseFromTheUrl) {
  pitstop::test::RedisServer server;
  asio::io_context ioc{1};
  Client admin(ioc, settings(server.url()), "admin");
  admin.start();
  Client user(ioc, settings("redis://:s3cret@127.0.0.1:" + std::to_string(server.port()) + "/3"), "user");
  // Connects after the password is set.
  pitstop::test::run(ioc, [](Client& a, Client& u) -> asio::awaitable<void> {
    const std::string_view require[] = {"CONFIG", "SET", "requirepass", "s3cret"};
    auto r = co_await a.command(require);
    EXPECT_TRUE(r && r->str == "OK");
    u.start();
    const std::string_view info[] = {"CLIENT", "INFO"};
    auto i = co_await u.command(info);
    EXPECT_TRUE(i && !i->is_error());
    if (i) {
      EXPECT_NE(i->str.find(" db=3 "), std::string::npos) << i->str;
    }
  }(admin, user));
}

TEST(RedisClient, WrongPasswordIsReportedAndRetried) {
  pitstop::test::RedisServer server;
  asio::io_context ioc{1};
  Client admin(ioc, settings(server.url()), "admin");
  admin.start();
  Client user(ioc, settings("redis://:wrong@127.0.0.1:" + std::to_string(server.port()) + "/0"), "user");
  pitstop::test::run(ioc, [](Client& a, Client& u) -> asio::awaitable<void> {
    const std::string_view require[] = {"CONFIG", "SET", "requirepass", "right"};
    co_await a.command(require);
    u.start();
    const std::string_view ping[] = {"PING"};
    auto r = co_await u.command(ping);
    // Either the PING itself is refused (NOAUTH) or the connection was dropped first.
    EXPECT_TRUE(!r || r->is_error());
    co_await sleep_for(100ms);
    EXPECT_NE(u.last_error().find("AUTH"), std::string::npos) << u.last_error();
  }(admin, user));
}
