// No stale answer after a write's response, on any instance: two pitstop instances sharing Redis
// and MariaDB, writes through one, reads through both, and the faults that broke it before
// (issue 10): an instance that does not hear the queue Redis, a stalled queue Redis, an instance
// stopped past its lease, cache Redis stopped and killed, an instance restarted.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <atomic>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "tests/support/support.hpp"

using namespace std::chrono_literals;
using namespace pitstop::test;

namespace {

std::string unique_site() {
  static int n = 0;
  return "cohtest-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string q(const std::string& sql) {
  auto out = mariadb_sql(service_config().mariadb.primary, sql);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

class Coherence : public ::testing::Test {
 protected:
  Coherence() : user_(service_config().mariadb.primary, "coherence-" + std::to_string(::getpid()) + "@example.com", {"Workshop Manager", "All"}) {}
  ~Coherence() override {
    if (!customers_.empty()) {
      std::string list;
      for (const auto& c : customers_) list += (list.empty() ? "'" : ",'") + c + "'";
      q("DELETE FROM `tabCustomer` WHERE name IN (" + list + ")");
    }
  }

  std::string auth() const { return user_.token_header(); }

  RawClient::Response call(std::uint16_t port, const std::string& method, const std::string& target, const std::string& body = {}) {
    auto r = http_request(port, method, target, {auth(), "Content-Type: application/json"}, 30s, body);
    if (!r) throw std::runtime_error("no answer to " + method + " " + target);
    return *r;
  }

  // Fresh customers made around pitstop; their trigger invalidations are delivered before the
  // instances start, so that nothing drops the answers a test caches.
  std::vector<std::string> customers(int n) {
    static int seq = 0;
    std::vector<std::string> out;
    std::string values;
    for (int i = 0; i < n; ++i) {
      out.push_back("COH-" + std::to_string(::getpid()) + "-" + std::to_string(seq++));
      values.append(values.empty() ? "" : ",").append("('").append(out.back()).append("', 'v0')");
    }
    q("INSERT INTO `tabCustomer` (name, customer_name) VALUES " + values);
    customers_.insert(customers_.end(), out.begin(), out.end());
    return out;
  }

  static std::string doc(const std::string& c) { return "/api/resource/Customer/" + c; }
  static std::string summary(const std::string& c) {
    return "/api/method/universal_workshop.api.get_customer_summary?customer=" + c;
  }
  // The version a read shows: customer_name "v<N>".
  static long version_of(const RawClient::Response& r, bool is_summary) {
    const std::string name = is_summary ? json_field(r.body, {"message", "customer", "customer_name"}) : json_field(r.body, {"data", "customer_name"});
    if (name.size() < 2 || name[0] != 'v') return -1;
    return std::stol(name.substr(1));
  }

  // Reads `target` through `port` until its Cache-Status says `what` (recovery after a fault).
  bool eventually(std::uint16_t port, const std::string& target, const std::string& what, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      if (has(cache_status(call(port, "GET", target)), what)) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  ApiUser user_;
  std::vector<std::string> customers_;
};

// An instance of `site`; empty URLs: the services' Redis.
std::map<std::string, std::string> instance_env(const std::string& site, const std::string& queue_url = {}, const std::string& cache_url = {}) {
  std::map<std::string, std::string> env{{"PITSTOP_SITE", site}, {"PITSTOP_LIMITING_ENABLED", "false"}};
  if (!queue_url.empty()) env["PITSTOP_REDIS_QUEUE_URL"] = queue_url;
  if (!cache_url.empty()) env["PITSTOP_REDIS_CACHE_URL"] = cache_url;
  return env;
}

}  // namespace

// Defect 1: B's subscription stays connected but hears nothing (its queue Redis link is held).
// Before, A answered the write at once and B went on answering the old document from L1.
TEST_F(Coherence, AnInstanceThatDoesNotHearTheWriteNeverAnswersTheOldStateAfterIt) {
  RedisServer queue;
  Link to_b(queue.port());
  const std::string site = unique_site();
  auto c = customers(1)[0];
  Pitstop a(instance_env(site, queue.url()));
  Pitstop b(instance_env(site, to_b.redis_url()));
  for (int i = 0; i < 2; ++i) call(b.port(), "GET", doc(c));
  ASSERT_TRUE(has(cache_status(call(b.port(), "GET", doc(c))), "detail=l1"));
  to_b.hold(true, false);
  ASSERT_EQ(call(a.port(), "PUT", doc(c), R"({"customer_name":"v1"})").status, 200);
  auto r = call(b.port(), "GET", doc(c));
  EXPECT_EQ(json_field(r.body, {"data", "customer_name"}), "v1") << cache_status(r);
  to_b.release();
  // Without a restart, B answers from L1 again.
  EXPECT_TRUE(eventually(b.port(), doc(c), "detail=l1"));
  EXPECT_EQ(json_field(call(b.port(), "GET", doc(c)).body, {"data", "customer_name"}), "v1");
}

// Defect 3: the queue Redis stalls (SIGSTOP) for seconds. Before, B's subscription stayed
// "connected" and B served the old value from L1 for as long as the stall lasted.
TEST_F(Coherence, AStalledQueueRedisNeverLeavesAnInstanceAnsweringTheOldState) {
  RedisServer queue;
  const std::string site = unique_site();
  auto c = customers(1)[0];
  Pitstop a(instance_env(site, queue.url()));
  Pitstop b(instance_env(site, queue.url()));
  for (auto* p : {&a, &b})
    for (int i = 0; i < 2; ++i) call(p->port(), "GET", doc(c));
  ASSERT_TRUE(has(cache_status(call(b.port(), "GET", doc(c))), "detail=l1"));
  queue.pause();
  ASSERT_EQ(call(a.port(), "PUT", doc(c), R"({"customer_name":"v1"})").status, 200);
  const auto until = std::chrono::steady_clock::now() + 2s;
  int reads = 0;
  while (std::chrono::steady_clock::now() < until) {
    for (auto* p : {&a, &b}) {
      auto r = call(p->port(), "GET", doc(c));
      ASSERT_EQ(json_field(r.body, {"data", "customer_name"}), "v1") << "read " << reads << " through " << (p == &a ? "A" : "B") << ": "
                                                                << cache_status(r);
      ++reads;
    }
  }
  queue.resume();
  // The outbox row the writer could not publish is relayed; both instances use L1 again.
  std::string pending = "?";
  for (int i = 0; i < 200 && pending != "0"; ++i) {
    std::this_thread::sleep_for(50ms);
    pending = q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE done = 0 AND site = '" + site + "'");
  }
  EXPECT_EQ(pending, "0");
  for (auto* p : {&a, &b}) EXPECT_TRUE(eventually(p->port(), doc(c), "detail=l1"));
}

// An instance stopped (SIGSTOP) longer than its lease: writes stop waiting for it, and when it
// resumes, the requests that reached it while it was stopped (after the write was answered) do
// not get the old answer from its L1.
TEST_F(Coherence, AnInstanceStoppedPastItsLeaseComesBackWithoutAnsweringTheOldState) {
  const std::string site = unique_site();
  auto c = customers(1)[0];
  Pitstop a(instance_env(site));
  Pitstop b(instance_env(site));
  for (int i = 0; i < 2; ++i) call(b.port(), "GET", doc(c));
  ASSERT_TRUE(has(cache_status(call(b.port(), "GET", doc(c))), "detail=l1"));
  b.process().signal(SIGSTOP);
  ASSERT_EQ(call(a.port(), "PUT", doc(c), R"({"customer_name":"v1"})").status, 200);
  // Sent now, read by B when it resumes.
  auto pending = std::async(std::launch::async, [&] { return call(b.port(), "GET", doc(c)); });
  std::this_thread::sleep_for(1500ms);
  // Past B's lease, a write no longer waits for it: answered, whatever B does.
  ASSERT_EQ(call(a.port(), "PUT", doc(c), R"({"customer_name":"v2"})").status, 200);
  b.process().signal(SIGCONT);
  auto r = pending.get();
  EXPECT_EQ(json_field(r.body, {"data", "customer_name"}), "v2") << cache_status(r);
  EXPECT_TRUE(eventually(b.port(), doc(c), "detail=l1"));
}

// The coherence run: concurrent writers through both instances, readers through both, and one
// fault after another. A read must never show a version older than one whose write was answered
// before the read was sent; no answered write may be lost; the outbox drains; L1 comes back.
TEST_F(Coherence, ConcurrentReadersAndWritersThroughFaultsSeeNoStaleAnswer) {
  RedisServer queue, cache;
  const std::string site = unique_site();
  const auto docs = customers(6);
  auto env = instance_env(site, queue.url(), cache.url());
  auto a = std::make_unique<Pitstop>(env);
  auto b = std::make_unique<Pitstop>(env);
  std::mutex ports_m;
  std::uint16_t ports[2] = {a->port(), b->port()};
  auto port = [&](int i) {
    std::lock_guard lock(ports_m);
    return ports[i];
  };

  struct Doc {
    std::mutex write;                // one writer at a time per document: versions only go up
    std::atomic<long> answered{0};   // the highest version whose write was answered 200
    long sent = 0;
  };
  std::vector<Doc> state(docs.size());
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0}, writes{0}, stale{0}, errors{0}, unanswered{0};
  std::mutex bad_m;
  std::vector<std::string> bad_answers;
  std::mutex log_m;
  std::vector<std::string> stale_log;

  auto writer = [&](int seed) {
    std::mt19937 rng(seed);
    while (!stop) {
      const std::size_t d = rng() % docs.size();
      std::lock_guard lock(state[d].write);
      const long v = ++state[d].sent;
      try {
        auto r = call(port(static_cast<int>(rng() % 2)), "PUT", doc(docs[d]), "{\"customer_name\":\"v" + std::to_string(v) + "\"}");
        if (r.status == 200) {
          state[d].answered = v;
          ++writes;
        } else {
          ++errors;
          std::lock_guard lock(bad_m);
          if (bad_answers.size() < 5) bad_answers.push_back("PUT " + std::to_string(r.status) + " " + r.body.substr(0, 200));
        }
      } catch (const std::exception&) {
        ++unanswered;  // an instance being restarted: the write may or may not have happened
      }
    }
  };
  auto reader = [&](int seed) {
    std::mt19937 rng(seed);
    while (!stop) {
      const std::size_t d = rng() % docs.size();
      const bool is_summary = rng() % 2;
      const int which = static_cast<int>(rng() % 2);
      const long floor = state[d].answered.load();
      try {
        auto r = call(port(which), "GET", is_summary ? summary(docs[d]) : doc(docs[d]));
        if (r.status != 200) {
          ++errors;
          std::lock_guard lock(bad_m);
          if (bad_answers.size() < 5) bad_answers.push_back("GET " + std::to_string(r.status) + " " + r.body.substr(0, 200));
          continue;
        }
        ++reads;
        const long seen = version_of(r, is_summary);
        if (seen < floor) {
          ++stale;
          std::lock_guard lock(log_m);
          if (stale_log.size() < 10)
            stale_log.push_back(std::string(which ? "B " : "A ") + (is_summary ? "summary " : "doc ") + docs[d] + ": v" + std::to_string(seen) +
                                " after v" + std::to_string(floor) + " was answered (" + cache_status(r) + ")");
        }
      } catch (const std::exception&) {
        ++unanswered;  // the instance killed and being restarted
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) threads.emplace_back(writer, 100 + i);
  for (int i = 0; i < 4; ++i) threads.emplace_back(reader, 200 + i);

  auto phase = [&](const char* name, auto&& fault, auto&& heal) {
    std::this_thread::sleep_for(1s);
    fault();
    std::this_thread::sleep_for(2s);
    heal();
    RecordProperty(name, std::to_string(writes.load()) + " writes, " + std::to_string(reads.load()) + " reads so far");
  };
  phase("steady", [] {}, [] {});
  phase("cache_redis_stopped", [&] { cache.pause(); }, [&] { cache.resume(); });
  phase("cache_redis_killed", [&] { cache.stop(); }, [&] { cache.start(); });
  phase("queue_redis_stopped", [&] { queue.pause(); }, [&] { queue.resume(); });
  phase("instance_stopped_past_its_lease", [&] { b->process().signal(SIGSTOP); }, [&] { b->process().signal(SIGCONT); });
  phase("instance_restarted",
        [&] {
          b->process().signal(SIGKILL);
          b->process().wait(10s);
        },
        [&] {
          auto fresh = std::make_unique<Pitstop>(env);
          std::lock_guard lock(ports_m);
          ports[1] = fresh->port();
          b = std::move(fresh);
        });
  std::this_thread::sleep_for(1s);
  stop = true;
  for (auto& t : threads) t.join();

  std::string why;
  for (const auto& s : stale_log) why += "\n  " + s;
  EXPECT_EQ(stale.load(), 0) << "stale reads:" << why;
  // Every fault is survived without an error answer (only the killed instance leaves requests unanswered).
  std::string bad;
  for (const auto& b : bad_answers) bad += "\n  " + b;
  EXPECT_EQ(errors.load(), 0) << "error answers:" << bad;
  EXPECT_GT(writes.load(), 50);
  EXPECT_GT(reads.load(), 200);
  // No answered write lost: the database holds at least the last answered version of each.
  for (std::size_t d = 0; d < docs.size(); ++d) {
    const std::string name = q("SELECT customer_name FROM `tabCustomer` WHERE name = '" + docs[d] + "'");
    EXPECT_GE(std::stol(name.substr(1)), state[d].answered.load()) << docs[d];
  }
  // Everything the writers left undelivered is delivered.
  std::string pending = "?";
  for (int i = 0; i < 200 && pending != "0"; ++i) {
    pending = q("SELECT COUNT(*) FROM `pitstop_outbox` WHERE done = 0 AND site = '" + site + "'");
    if (pending != "0") std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(pending, "0");
  // Both instances recovered without a restart of their own, and agree with the database.
  for (std::uint16_t p : {a->port(), b->port()}) {
    EXPECT_TRUE(eventually(p, doc(docs[0]), "detail=l1")) << "port " << p;
    for (std::size_t d = 0; d < docs.size(); ++d) {
      const std::string name = q("SELECT customer_name FROM `tabCustomer` WHERE name = '" + docs[d] + "'");
      EXPECT_EQ(json_field(call(p, "GET", doc(docs[d])).body, {"data", "customer_name"}), name);
    }
  }
  RecordProperty("reads", std::to_string(reads.load()));
  RecordProperty("writes", std::to_string(writes.load()));
  RecordProperty("errors", std::to_string(errors.load()));
  RecordProperty("unanswered", std::to_string(unanswered.load()));
}
