// The pitstop binary as a user runs it: start-up, health, readiness, signals.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <fstream>
#include <thread>

#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using pitstop::test::Process;
using pitstop::test::RawClient;

namespace {

std::string pitstop_binary() { return (pitstop::test::binary_dir() / "pitstop").string(); }

using pitstop::test::Pitstop;

struct Readiness {
  int status = 0;
  bool cache = false, queue = false, mariadb = false;
  std::string body;
};

Readiness readyz(std::uint16_t port) {
  Readiness out;
  auto r = pitstop::test::http_get(port, "/readyz");
  if (!r) return out;
  out.status = r->status;
  out.body = r->body;
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(r->body).get(doc)) return out;
  bool ok = false;
  if (!doc["checks"]["redis_cache"]["ok"].get(ok)) out.cache = ok;
  if (!doc["checks"]["redis_queue"]["ok"].get(ok)) out.queue = ok;
  if (!doc["checks"]["mariadb"]["ok"].get(ok)) out.mariadb = ok;
  return out;
}

// Polls /readyz until `pred` holds; returns the last answer.
template <class Pred>
Readiness readyz_until(std::uint16_t port, Pred pred, std::chrono::milliseconds limit = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  Readiness r;
  do {
    r = readyz(port);
    if (pred(r)) return r;
    std::this_thread::sleep_for(100ms);
  } while (std::chrono::steady_clock::now() < deadline);
  return r;
}

}  // namespace

TEST(App, ServesHealthReadinessAndFrappeStyleNotFound) {
  Pitstop p;
  auto health = pitstop::test::http_get(p.port(), "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "{\"status\":\"ok\"}");

  auto ready = readyz_until(p.port(), [](const Readiness& r) { return r.status == 200; });
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_TRUE(ready.cache && ready.queue && ready.mariadb) << ready.body;
  // What L1 holds, for sizing it: the configured maximum is config/pitstop.json's 64 MiB.
  EXPECT_NE(ready.body.find("\"l1\":{\"entries\":"), std::string::npos) << ready.body;
  EXPECT_NE(ready.body.find("\"max_bytes\":67108864"), std::string::npos) << ready.body;

  auto missing = pitstop::test::http_get(p.port(), "/api/resource/Nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(missing->body.find("\"exc_type\":\"DoesNotExistError\""), std::string::npos) << missing->body;

  RawClient c(p.port());
  ASSERT_TRUE(c.send("POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  auto post = c.read_response();
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->headers["allow"], "GET, HEAD");

  p.process().signal(SIGTERM);
  auto status = p.process().wait(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << p.process().log();
}

TEST(App, SigtermFinishesTheRequestInFlightThenExitsZero) {
  // MariaDB that never answers makes /readyz take its connect deadline (1.5 s): a request that
  // is still in flight when SIGTERM arrives.
  pitstop::test::BlackHole hole;
  Pitstop p({{"PITSTOP_MARIADB_PRIMARY", "mariadb://u:p@127.0.0.1:" + std::to_string(hole.port()) + "/workshop"},
             {"PITSTOP_MARIADB_CONNECT_TIMEOUT_MS", "1500"},
             {"PITSTOP_TIMEOUTS_READINESS_MS", "3000"}},
            false);
  RawClient idle(p.port());
  ASSERT_TRUE(idle.send("GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(idle.read_response());

  RawClient busy(p.port());
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(busy.send("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(300ms);
  p.process().signal(SIGTERM);

  EXPECT_TRUE(idle.closed_by_peer(2s)) << "idle keep-alive connection not closed on SIGTERM";
  std::this_thread::sleep_for(100ms);
  EXPECT_THROW(RawClient refused(p.port()), std::runtime_error) << "still accepting after SIGTERM";

  auto r = busy.read_response(5s);
  ASSERT_TRUE(r) << "the in-flight request was cut off";
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_NE(r->body.find("\"mariadb\":{\"ok\":false"), std::string::npos) << r->body;
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1400ms);

  auto status = p.process().wait(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << p.process().log();
  EXPECT_NE(p.process().log().find("drained"), std::string::npos) << p.process().log();
}

TEST(App, DrainDeadlineCutsRequestsThatTakeTooLong) {
  pitstop::test::BlackHole hole;
  Pitstop p({{"PITSTOP_MARIADB_PRIMARY", "mariadb://u:p@127.0.0.1:" + std::to_string(hole.port()) + "/workshop"},
             {"PITSTOP_MARIADB_CONNECT_TIMEOUT_MS", "20000"},
             {"PITSTOP_TIMEOUTS_READINESS_MS", "30000"},
             {"PITSTOP_TIMEOUTS_DRAIN_MS", "500"}},
            false);
  RawClient busy(p.port());
  ASSERT_TRUE(busy.send("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(200ms);
  auto started = std::chrono::steady_clock::now();
  p.process().signal(SIGTERM);
  auto status = p.process().wait(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0) << p.process().log();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_NE(p.process().log().find("drain deadline passed"), std::string::npos) << p.process().log();
}

TEST(App, ReadinessFollowsRedisAndMariaDb) {
  pitstop::test::RedisServer cache, queue;
  pitstop::test::MariaDbServer db;
  db.load_schema();
  Pitstop p({{"PITSTOP_REDIS_CACHE_URL", cache.url()},
             {"PITSTOP_REDIS_QUEUE_URL", queue.url()},
             {"PITSTOP_MARIADB_PRIMARY", "mariadb://pitstop:pitstop@127.0.0.1:" + std::to_string(db.port()) + "/workshop"},
             {"PITSTOP_REDIS_CACHE_RECONNECT_MAX_BACKOFF_MS", "200"},
             {"PITSTOP_REDIS_QUEUE_RECONNECT_MAX_BACKOFF_MS", "200"}});
  auto all_ok = [](const Readiness& r) { return r.status == 200 && r.cache && r.queue && r.mariadb; };
  auto r = readyz_until(p.port(), all_ok);
  ASSERT_TRUE(all_ok(r)) << r.body;

  cache.stop();
  r = readyz_until(p.port(), [](const Readiness& x) { return x.status == 503; });
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_FALSE(r.cache) << r.body;
  EXPECT_TRUE(r.queue && r.mariadb) << r.body;
  cache.start();
  r = readyz_until(p.port(), all_ok);
  EXPECT_TRUE(all_ok(r)) << r.body;

  queue.stop();
  r = readyz_until(p.port(), [](const Readiness& x) { return x.status == 503; });
  EXPECT_FALSE(r.queue) << r.body;
  queue.start();
  r = readyz_until(p.port(), all_ok);
  EXPECT_TRUE(all_ok(r)) << r.body;

  db.stop();
  r = readyz_until(p.port(), [](const Readiness& x) { return x.status == 503; });
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_FALSE(r.mariadb) << r.body;
  EXPECT_TRUE(r.cache && r.queue) << r.body;
  db.start();
  r = readyz_until(p.port(), all_ok, 30s);
  EXPECT_TRUE(all_ok(r)) << r.body;

  p.process().signal(SIGTERM);
  auto status = p.process().wait(10s);
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
}

TEST(App, CheckConfigExitsZeroOrTwo) {
  {
    Process ok({pitstop_binary(), "--check-config", (pitstop::test::source_dir() / "config/pitstop.json").string()});
    auto st = ok.wait(10s);
    ASSERT_TRUE(st);
    EXPECT_EQ(*st, 0) << ok.log();
    EXPECT_NE(ok.log().find(": ok"), std::string::npos);
  }
  auto bad_path = pitstop::test::scratch_dir() / "bad.json";
  std::ofstream(bad_path) << "{\"listen\": \"0.0.0.0:8080\", \"wokers\": 2}";
  {
    Process bad({pitstop_binary(), "--check-config", bad_path.string()});
    auto st = bad.wait(10s);
    ASSERT_TRUE(st);
    EXPECT_EQ(*st, 2);
    EXPECT_NE(bad.log().find(bad_path.string() + ": $.wokers: unknown key"), std::string::npos) << bad.log();
  }
  {
    Process env_bad({pitstop_binary(), "--check-config", (pitstop::test::source_dir() / "config/pitstop.json").string()},
                    {{"PITSTOP_LIMITS_MAX_URL_BYTES", "100000"}});
    auto st = env_bad.wait(10s);
    ASSERT_TRUE(st);
    EXPECT_EQ(*st, 2);
    EXPECT_NE(env_bad.log().find("max_url_bytes"), std::string::npos) << env_bad.log();
  }
  {
    // Starting with a bad config fails before listening, with the same message.
    Process start({pitstop_binary(), "--config", bad_path.string()});
    auto st = start.wait(10s);
    ASSERT_TRUE(st);
    EXPECT_EQ(*st, 2);
  }
  std::filesystem::remove(bad_path);
}

TEST(App, PortInUseIsAClearStartupError) {
  // A listener of another program (no SO_REUSEPORT) holds the port.
  pitstop::test::BlackHole other;
  Process p({pitstop_binary(), "--config", (pitstop::test::source_dir() / "config/pitstop.json").string()},
            {{"PITSTOP_LISTEN", "127.0.0.1:" + std::to_string(other.port())}, {"PITSTOP_WORKERS", "1"}});
  auto st = p.wait(10s);
  ASSERT_TRUE(st);
  EXPECT_EQ(*st, 1) << p.log();
  EXPECT_NE(p.log().find("cannot listen on 127.0.0.1:" + std::to_string(other.port())), std::string::npos) << p.log();
  EXPECT_NE(p.log().find("PITSTOP_LISTEN"), std::string::npos) << p.log();
}
