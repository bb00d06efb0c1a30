// Rate limits and roles: the GCRA itself, trusted proxies, and the binary holding clients to
// their quotas across instances, classes, roles, rules, clock skew and Redis outages.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <future>
#include <regex>
#include <sstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/limits/limits.hpp"
#include "proxy/redis/client.hpp"
#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using namespace pitstop;
using namespace pitstop::test;
namespace fs = std::filesystem;

TEST(Gcra, BurstThenSteadyRate) {
  limits::LocalLimiter l;
  limits::Policy p{"get", 10, 10, 3};  // one per second, 3 more at once
  const std::int64_t t0 = 1'000'000'000;
  std::vector<std::int64_t> remaining;
  for (int i = 0; i < 4; ++i) {
    auto d = l.decide("k", p, t0);
    ASSERT_TRUE(d.allowed) << i;
    remaining.push_back(d.remaining);
  }
  EXPECT_EQ(remaining, (std::vector<std::int64_t>{3, 2, 1, 0}));
  auto refused = l.decide("k", p, t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_s, 1);
  EXPECT_EQ(refused.retry_after_us, 1'000'000);
  EXPECT_FALSE(l.decide("k", p, t0 + 999'999).allowed);
  auto next = l.decide("k", p, t0 + 1'000'000);
  EXPECT_TRUE(next.allowed);
  EXPECT_EQ(next.remaining, 0);
  EXPECT_EQ(next.reset_s, 4);  // four intervals of backlog to work off
  // Other buckets are independent.
  EXPECT_TRUE(l.decide("other", p, t0).allowed);
  // After a quiet while the whole burst is back.
  EXPECT_EQ(l.decide("k", p, t0 + 60'000'000).remaining, 3);
}

TEST(Gcra, AdmitsQuotaPlusBurstPerWindowAtMost) {
  limits::LocalLimiter l;
  limits::Policy p{"get", 200, 60, 20};
  int admitted = 0;
  // Hammer every millisecond for a minute.
  for (std::int64_t t = 0; t < 60'000'000; t += 1000)
    if (l.decide("k", p, 5'000'000'000 + t).allowed) ++admitted;
  EXPECT_LE(admitted, 200 + 21);
  EXPECT_GE(admitted, 200 + 20);
}

// Tokens granted to workers ahead of use count as spent until they lapse: a client that builds
// up leases on two workers at a steady rate and then bursts gets no more than GCRA allows.
TEST(Leases, ASteadyClientThatBurstsGetsNoMoreThanTheQuotaAllows) {
  boost::asio::io_context ioc{1};
  redis::Client queue(ioc, test::service_config().redis_queue, "queue");
  queue.start();
  limits::LocalLimiter local;
  limits::Settings s;
  s.site = "leasetest" + std::to_string(::getpid()) + "-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  s.shortcut = false;
  limits::Limiter w1(queue, local, s), w2(queue, local, s);
  // One every 100 ms, 400 at once.
  limits::Policy p;
  p.name = "get";
  p.limit = 600;
  p.window_s = 60;
  p.burst = 400;
  int admitted = 0, leased = 0;
  const auto started = std::chrono::steady_clock::now();
  test::run(ioc, [](limits::Limiter& w1, limits::Limiter& w2, limits::Policy p, int& admitted, int& leased) -> boost::asio::awaitable<void> {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    // 2.5 s at 40 a second on each worker: far below the limit, so both come to hold leases.
    for (int i = 0; i < 100; ++i) {
      for (auto* w : {&w1, &w2}) {
        auto d = co_await w->check("user:steady", p);
        admitted += d.allowed;
        leased += d.source == limits::Decision::Source::lease;
      }
      t.expires_after(25ms);
      co_await t.async_wait(boost::asio::use_awaitable);
    }
    // Then everything at once, until both refuse.
    for (int refusals = 0; refusals < 2;) {
      refusals = 0;
      for (auto* w : {&w1, &w2}) {
        auto d = co_await w->check("user:steady", p);
        admitted += d.allowed;
        refusals += !d.allowed;
      }
    }
  }(w1, w2, p, admitted, leased), 20s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GT(leased, 80) << "the steady phase was served from leases";
  // GCRA's bound: the burst and one more at once, then one per 100 ms.
  EXPECT_LE(admitted, 401 + static_cast<int>(seconds * 10) + 1) << "over " << seconds << " s";
  EXPECT_GE(admitted, 401 - 2 * 64) << "held tokens lapse; the client is not starved";
  queue.stop();
}

TEST(RateLimitFields, FollowTheIetfDraft) {
  limits::Policy p{"get", 200, 60, 20};
  limits::Decision d;
  d.remaining = 17;
  d.reset_s = 12;
  EXPECT_EQ(limits::policy_field(p), "\"get\";q=200;w=60");
  EXPECT_EQ(limits::limit_field(p, d), "\"get\";r=17;t=12");
}

TEST(TrustedProxies, RightMostUntrustedForwardedAddress) {
  limits::TrustedProxies t;
  std::string why;
  ASSERT_TRUE(t.add("10.0.0.0/8", why));
  ASSERT_TRUE(t.add("127.0.0.1", why));
  ASSERT_TRUE(t.add("fd00::/8", why));
  EXPECT_FALSE(t.add("10.0.0.0/33", why));
  EXPECT_FALSE(t.add("not-an-ip", why));
  auto peer = [](const char* a) { return boost::asio::ip::make_address(a); };
  // An untrusted peer's header is ignored: it could say anything.
  EXPECT_EQ(t.client(peer("203.0.113.9"), "1.1.1.1"), "203.0.113.9");
  // A trusted peer vouches for the entry before it; trusted hops are skipped.
  EXPECT_EQ(t.client(peer("127.0.0.1"), "198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(t.client(peer("10.1.2.3"), "6.6.6.6, 198.51.100.7, 10.9.9.9"), "198.51.100.7");
  EXPECT_EQ(t.client(peer("10.1.2.3"), "10.0.0.1, 10.0.0.2"), "10.0.0.1");
  EXPECT_EQ(t.client(peer("10.1.2.3"), "garbage, 10.0.0.2"), "10.0.0.2");
  EXPECT_EQ(t.client(peer("10.1.2.3"), ""), "10.1.2.3");
  EXPECT_EQ(t.client(peer("fd00::1"), "2001:db8::5"), "2001:db8::5");
  EXPECT_EQ(t.client(peer("::ffff:127.0.0.1"), "192.0.2.1"), "192.0.2.1");
}

namespace {

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string unique_site() {
  static int n = 0;
  return "limittest-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// Quotas for the tests: 30 per `window_s`, burst 5. The default refills one every 10 s, so that
// counts never depend on how fast the test (or a sanitizer build) runs; tests of the refill
// itself take 3 s (one every 100 ms).
std::map<std::string, std::string> tight(std::string site, std::string window_s = "300") {
  return {{"PITSTOP_SITE", std::move(site)},
          {"PITSTOP_RATE_LIMITS_GET_LIMIT", "30"},
          {"PITSTOP_RATE_LIMITS_GET_WINDOW_S", window_s},
          {"PITSTOP_RATE_LIMITS_GET_BURST", "5"},
          {"PITSTOP_RATE_LIMITS_POST_LIMIT", "30"},
          {"PITSTOP_RATE_LIMITS_POST_WINDOW_S", window_s},
          {"PITSTOP_RATE_LIMITS_POST_BURST", "5"}};
}

const std::string kCatalog = "/api/method/universal_workshop.api.get_service_catalog";

RawClient::Response get(std::uint16_t port, const std::string& target, std::vector<std::string> headers) {
  auto r = http_request(port, "GET", target, headers);
  if (!r) throw std::runtime_error("no answer");
  return *r;
}

// r= of a RateLimit field.
long remaining_of(const RawClient::Response& r) {
  auto it = r.headers.find("ratelimit");
  if (it == r.headers.end()) return -1;
  std::smatch m;
  if (!std::regex_search(it->second, m, std::regex("r=(\\d+)"))) return -1;
  return std::stol(m[1]);
}

// `n` keep-alive clients, alternately on `a` and `b`, each sending GET kCatalog with `auth` for
// `run` (pausing `pause` after each answer); every answer goes to `seen`, on the clients' threads.
void hammer(std::uint16_t a, std::uint16_t b, const std::string& auth, int n, std::chrono::milliseconds run,
            std::chrono::milliseconds pause, const std::function<void(const RawClient::Response&)>& seen) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i)
    clients.emplace_back([&, i] {
      RawClient c(i % 2 ? a : b);
      while (!stop) {
        if (!c.send("GET " + kCatalog + " HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n\r\n")) break;
        auto r = c.read_response();
        if (!r) break;
        seen(*r);
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
      }
    });
  std::this_thread::sleep_for(run);
  stop = true;
  for (auto& t : clients) t.join();
}

// Writes a variant of rules/workshop.json (edit applied to its text) and returns its path.
std::string rules_variant(const std::string& from, const std::string& to) {
  static int n = 0;
  return rules_copy("workshop.json", "limit-rules-" + std::to_string(n++) + ".json", [&](std::string& text) {
    auto pos = text.find(from);
    if (pos == std::string::npos) throw std::runtime_error("not in the rules: " + from);
    text.replace(pos, from.size(), to);
  });
}

class Limits : public ::testing::Test {
 protected:
  Limits()
      : alice_(service_config().mariadb.primary, "limits-alice-" + std::to_string(::getpid()) + "@example.com",
               {"Service Advisor", "All"}),
        bob_(service_config().mariadb.primary, "limits-bob-" + std::to_string(::getpid()) + "@example.com", {"Technician", "All"}),
        integration_(service_config().mariadb.primary, "limits-integration-" + std::to_string(::getpid()) + "@example.com",
                     {"Integration", "All"}) {}
  ApiUser alice_, bob_, integration_;
};

}  // namespace

TEST_F(Limits, EveryAnswerSaysWhereTheClientStands) {
  Pitstop p(tight(unique_site()));
  auto r = get(p.port(), kCatalog, {alice_.token_header()});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["ratelimit-policy"], "\"get\";q=30;w=300");
  EXPECT_TRUE(std::regex_match(r.headers["ratelimit"], std::regex("\"get\";r=5;t=10"))) << r.headers["ratelimit"];
  // Cached answers get fresh fields: they are never stored with the entry.
  auto again = get(p.port(), kCatalog, {alice_.token_header()});
  EXPECT_TRUE(has(again.headers["cache-status"], "hit"));
  EXPECT_EQ(remaining_of(again), 4);
  // Health checks are not limited.
  EXPECT_FALSE(http_get(p.port(), "/healthz")->headers.count("ratelimit"));
}

TEST_F(Limits, RefusalIs429WithRetryAfterAndCostsNoCacheWork) {
  Pitstop p(tight(unique_site()));
  Pitstop refilling(tight(unique_site(), "3"));
  int ok = 0;
  RawClient::Response refused;
  for (int i = 0; i < 10; ++i) {
    auto r = get(p.port(), kCatalog, {alice_.token_header()});
    if (r.status == 200) ++ok;
    else {
      refused = r;
      break;
    }
  }
  EXPECT_EQ(ok, 6);  // burst 5 + 1
  ASSERT_EQ(refused.status, 429);
  EXPECT_TRUE(has(refused.body, "\"exc_type\":\"TooManyRequestsError\"")) << refused.body;
  EXPECT_EQ(refused.headers["retry-after"], "10");
  EXPECT_EQ(remaining_of(refused), 0);
  EXPECT_EQ(refused.headers["cache-status"], "pitstop; detail=refused");
  EXPECT_FALSE(refused.headers.count("etag"));
  // Other identities and other classes have their own quotas.
  EXPECT_EQ(get(p.port(), kCatalog, {bob_.token_header()}).status, 200);
  auto post = http_request(p.port(), "POST", "/api/resource/Customer", {alice_.token_header()}, 10s, R"({"customer_name":""})");
  EXPECT_NE(post->status, 429);
  // The quota comes back at its rate: one per 100 ms here.
  while (get(refilling.port(), kCatalog, {alice_.token_header()}).status == 200) {
  }
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(get(refilling.port(), kCatalog, {alice_.token_header()}).status, 200);
}

TEST_F(Limits, QuotasHoldAcrossInstancesUnderParallelLoad) {
  const std::string site = unique_site();
  Pitstop a(tight(site, "3")), b(tight(site, "3"));
  std::atomic<int> admitted{0}, refused{0}, bad_fields{0};
  const auto started = std::chrono::steady_clock::now();
  hammer(a.port(), b.port(), alice_.token_header(), 8, 3s, 0ms, [&](const RawClient::Response& r) {
    const long rem = remaining_of(r);
    if (r.status == 200) {
      ++admitted;
      if (rem < 0 || rem > 5) ++bad_fields;
    } else if (r.status == 429) {
      ++refused;
      if (rem != 0 || r.headers.find("retry-after") == r.headers.end() || r.headers.at("retry-after").empty()) ++bad_fields;
    }
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // GCRA: at most the burst + 1 at once, then one per 100 ms.
  const int bound = 6 + static_cast<int>(seconds * 10) + 1;
  EXPECT_LE(admitted.load(), bound) << "over " << seconds << " s";
  EXPECT_GE(admitted.load(), bound - 8) << "far under the quota";
  EXPECT_GT(refused.load(), 0);
  EXPECT_EQ(bad_fields.load(), 0);
}

// A client far below its quota is decided mostly from tokens Redis granted the instance ahead
// of use, without a round trip per request, and is never refused for it.
TEST_F(Limits, ClientsFarBelowTheirQuotaRarelyCostARedisRoundTrip) {
  const std::string site = unique_site();
  auto env = tight(site, "2");
  env["PITSTOP_RATE_LIMITS_GET_LIMIT"] = "40000";  // 20,000 a second: beyond what the clients send
  env["PITSTOP_RATE_LIMITS_GET_BURST"] = "1000";
  env["PITSTOP_WORKERS"] = "1";
  Pitstop a(env), b(env);
  std::atomic<int> admitted{0}, refused{0}, other{0}, bad_fields{0};
  hammer(a.port(), b.port(), alice_.token_header(), 4, 3s, 1ms, [&](const RawClient::Response& r) {
    const long rem = remaining_of(r);
    if (r.status == 200) ++admitted;
    else if (r.status == 429) ++refused;
    else ++other;
    if (rem < 0 || rem > 1001) ++bad_fields;
  });
  long redis = 0, leased = 0;
  for (auto* p : {&a, &b}) {
    auto r = http_get(p->port(), "/readyz");
    ASSERT_TRUE(r);
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r->body, m, std::regex(R"("redis":(\d+),"leased":(\d+))"))) << r->body;
    redis += std::stol(m[1]);
    leased += std::stol(m[2]);
  }
  EXPECT_GT(admitted.load(), 200);
  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(bad_fields.load(), 0);
  EXPECT_EQ(redis + leased, admitted.load());
  EXPECT_GT(leased, 2 * redis) << "most decisions without a Redis round trip";
}

TEST_F(Limits, ASkewedClockDoesNotChangeDecisions) {
  const std::string site = unique_site();
  auto env = tight(site);
  Pitstop normal(env);
  env["LD_PRELOAD"] = PITSTOP_SKEW_LIB;
  env["PITSTOP_TEST_CLOCK_SKEW_S"] = "3600";
  env["ASAN_OPTIONS"] = "verify_asan_link_order=0:detect_leaks=0";
  Pitstop ahead(env);
  env["PITSTOP_TEST_CLOCK_SKEW_S"] = "-3600";
  Pitstop behind(env);
  // The skew is real: the instance's Date header is an hour off.
  EXPECT_NE(http_get(ahead.port(), "/healthz")->headers["date"], http_get(normal.port(), "/healthz")->headers["date"]);
  // One quota across the three: burst 5 + 1, whichever instance answers.
  int admitted = 0;
  std::vector<long> remaining;
  for (int i = 0; i < 12; ++i) {
    Pitstop& p = i % 3 == 0 ? normal : (i % 3 == 1 ? ahead : behind);
    auto r = get(p.port(), kCatalog, {alice_.token_header()});
    if (r.status == 200) {
      ++admitted;
      remaining.push_back(remaining_of(r));
    }
  }
  EXPECT_EQ(admitted, 6);
  EXPECT_EQ(remaining, (std::vector<long>{5, 4, 3, 2, 1, 0}));
}

TEST_F(Limits, RolesAndRulesCarryTheirOwnQuotas) {
  auto env = tight(unique_site());
  // The Integration role: get 600 per 3 s, burst 50.
  env["PITSTOP_LIMITING_ROLES_INTEGRATION_GET_LIMIT"] = "600";
  env["PITSTOP_LIMITING_ROLES_INTEGRATION_GET_WINDOW_S"] = "3";
  env["PITSTOP_LIMITING_ROLES_INTEGRATION_GET_BURST"] = "50";
  // customer_summary: its own quota, 2 per 10 s, no burst.
  env["PITSTOP_RULES"] = rules_variant("\"category\": \"customer_summary\",",
                                       "\"category\": \"customer_summary\", \"rate_limit\": { \"limit\": 2, \"window_s\": 10 },");
  Pitstop p(env);
  int integration_ok = 0;
  for (int i = 0; i < 40; ++i)
    if (get(p.port(), kCatalog, {integration_.token_header()}).status == 200) ++integration_ok;
  EXPECT_EQ(integration_ok, 40);
  auto r = get(p.port(), kCatalog, {integration_.token_header()});
  EXPECT_EQ(r.headers["ratelimit-policy"], "\"get\";q=600;w=3");
  // The rule's quota is its own bucket: the class quota is untouched by it.
  const std::string summary = "/api/method/universal_workshop.api.get_customer_summary?customer=CUST-00001";
  EXPECT_EQ(get(p.port(), summary, {alice_.token_header()}).status, 200);
  auto second = get(p.port(), summary, {alice_.token_header()});
  EXPECT_EQ(second.status, 429);
  EXPECT_EQ(second.headers["ratelimit-policy"], "\"get\";q=2;w=10");
  EXPECT_EQ(get(p.port(), kCatalog, {alice_.token_header()}).status, 200);
}

TEST_F(Limits, AnonymousClientsAreKeyedByAddressBehindTrustedProxiesOnly) {
  auto env = tight(unique_site());
  env["PITSTOP_RULES"] = rules_variant("\"tags\": [\"doctype:Service Type\"],", "\"tags\": [\"doctype:Service Type\"], \"allow_guest\": true,");
  {
    // No trusted proxy: X-Forwarded-For is anyone's to write and is ignored.
    Pitstop p(env);
    int ok = 0;
    for (int i = 0; i < 10; ++i)
      if (get(p.port(), kCatalog, {"X-Forwarded-For: 198.51.100." + std::to_string(i)}).status == 200) ++ok;
    EXPECT_EQ(ok, 6) << "spoofed addresses got quotas of their own";
  }
  env["PITSTOP_SITE"] = unique_site();
  env["PITSTOP_LIMITING_TRUSTED_PROXIES"] = "127.0.0.1";
  Pitstop p(env);
  int ok = 0;
  for (int i = 0; i < 10; ++i)
    if (get(p.port(), kCatalog, {"X-Forwarded-For: 198.51.100." + std::to_string(i)}).status == 200) ++ok;
  EXPECT_EQ(ok, 10) << "each forwarded client has its own quota";
  int same = 0;
  for (int i = 0; i < 10; ++i)
    if (get(p.port(), kCatalog, {"X-Forwarded-For: 203.0.113.50"}).status == 200) ++same;
  EXPECT_EQ(same, 6);
}

TEST_F(Limits, RedisDownMeansLocalLimitsThenSharedAgain) {
  RedisServer queue;
  auto env = tight(unique_site());
  env["PITSTOP_REDIS_QUEUE_URL"] = queue.url();
  env["PITSTOP_WORKERS"] = "1";
  env["PITSTOP_REDIS_QUEUE_RECONNECT_MAX_BACKOFF_MS"] = "100";
  Pitstop p(env);
  auto mode = [&] {
    auto r = http_get(p.port(), "/readyz");
    std::smatch m;
    std::regex_search(r->body, m, std::regex("\"rate_limits\":\\{\"ok\":true,\"mode\":\"(\\w+)\""));
    return m.size() > 1 ? m[1].str() : r->body;
  };
  EXPECT_EQ(get(p.port(), kCatalog, {alice_.token_header()}).status, 200);
  EXPECT_EQ(mode(), "shared");
  queue.stop();
  int ok = 0;
  for (int i = 0; i < 10; ++i)
    if (get(p.port(), kCatalog, {alice_.token_header()}).status == 200) ++ok;
  EXPECT_EQ(ok, 6) << "the local limiter holds the same quota";
  EXPECT_EQ(mode(), "local");
  queue.start();
  std::string m;
  for (int i = 0; i < 100 && m != "shared"; ++i) {
    std::this_thread::sleep_for(100ms);
    get(p.port(), kCatalog, {bob_.token_header()});
    m = mode();
  }
  EXPECT_EQ(m, "shared");
}

TEST_F(Limits, FailClosedRefusesWithoutRedis) {
  RedisServer queue;
  auto env = tight(unique_site());
  env["PITSTOP_REDIS_QUEUE_URL"] = queue.url();
  env["PITSTOP_LIMITING_FAIL_MODE"] = "closed";
  Pitstop p(env);
  EXPECT_EQ(get(p.port(), kCatalog, {alice_.token_header()}).status, 200);
  queue.stop();
  auto r = get(p.port(), kCatalog, {alice_.token_header()});
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(has(r.body, "fail_mode is closed")) << r.body;
}

TEST_F(Limits, TheLocalShortcutSparesRedisTheKnownOffenders) {
  for (bool shortcut : {true, false}) {
    RedisServer queue;
    auto env = tight(unique_site());
    env["PITSTOP_REDIS_QUEUE_URL"] = queue.url();
    env["PITSTOP_WORKERS"] = "1";
    env["PITSTOP_LIMITING_LOCAL_SHORTCUT"] = shortcut ? "true" : "false";
    Pitstop p(env);
    for (int i = 0; i < 6; ++i) ASSERT_EQ(get(p.port(), kCatalog, {alice_.token_header()}).status, 200);
    // The limiter's own count of Redis decisions (one worker: /readyz is its): EVALSHA calls on
    // the queue Redis would also count other tests' outbox rows this instance's relay delivers.
    auto redis_decisions = [&] {
      auto r = pitstop::test::http_get(p.port(), "/readyz");
      return r ? std::stol("0" + json_field(r->body, {"checks", "rate_limits", "decisions", "redis"})) : -1000L;
    };
    const long before = redis_decisions();
    for (int i = 0; i < 50; ++i) EXPECT_EQ(get(p.port(), kCatalog, {alice_.token_header()}).status, 429);
    const long asked = redis_decisions() - before;
    if (shortcut) {
      EXPECT_LE(asked, 2) << "refusals went to Redis";
    } else {
      EXPECT_GE(asked, 50);
      EXPECT_LE(asked, 51);
    }
  }
}

TEST_F(Limits, RolesGuardWrites) {
  Pitstop p;
  const std::string order = "/api/resource/Service%20Order/SO-2026-00001";
  // A technician may update an order but not delete it or create a customer.
  auto del = http_request(p.port(), "DELETE", order, {bob_.token_header()});
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 403);
  EXPECT_TRUE(has(del->body, "\"exc_type\":\"PermissionError\"")) << del->body;
  EXPECT_TRUE(has(del->body, "Insufficient Permission for Service Order")) << del->body;
  auto create = http_request(p.port(), "POST", "/api/resource/Customer", {bob_.token_header()}, 10s, R"({"customer_name":"x"})");
  EXPECT_EQ(create->status, 403);
  // A service advisor may not delete either; reading is for everyone verified.
  EXPECT_EQ(http_request(p.port(), "DELETE", order, {alice_.token_header()})->status, 403);
  EXPECT_EQ(get(p.port(), order, {bob_.token_header()}).status, 200);
  // Rules can require roles too.
  auto env = std::map<std::string, std::string>{
      {"PITSTOP_SITE", unique_site()},
      {"PITSTOP_RULES", rules_variant("\"category\": \"parts_availability\",", "\"category\": \"parts_availability\", \"roles\": [\"Workshop Manager\"],")}};
  Pitstop q(env);
  auto parts = get(q.port(), "/api/method/universal_workshop.api.get_parts_availability?item_code=ITEM-00001", {alice_.token_header()});
  EXPECT_EQ(parts.status, 403);
  EXPECT_TRUE(has(parts.body, "PermissionError"));
}
