// The write barrier inside one process: the order of its steps against another worker's lookups,
// and the acknowledgements it waits for. Real Redis (scripts/services) behind a Remote the test
// can hold.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <thread>

#include "proxy/invalidation/membership.hpp"
#include "tests/read_through_support.hpp"

namespace asio = boost::asio;
using namespace pitstop;
using namespace std::chrono_literals;
using cache::Served;
using pitstop::test::ReadWorld;

namespace {

// Forwards to the real store, but holds invalidations until released.
class HeldRemote final : public cache::Remote {
 public:
  HeldRemote(asio::io_context& ioc, cache::Remote& inner) : inner_(inner), gate_(ioc, std::chrono::steady_clock::time_point::max()) {}
  asio::awaitable<boost::system::result<Lookup>> get(const std::string& key) override { co_return co_await inner_.get(key); }
  asio::awaitable<boost::system::result<bool>> put(const cache::Entry& e, std::int64_t since) override {
    co_return co_await inner_.put(e, since);
  }
  asio::awaitable<boost::system::result<std::int64_t>> invalidate(std::span<const std::string> tags) override {
    held_ = true;
    co_await gate_.async_wait(asio::as_tuple(asio::use_awaitable));
    held_ = false;
    co_return co_await inner_.invalidate(tags);
  }
  bool held() const { return held_; }
  void release() { gate_.cancel(); }

 private:
  cache::Remote& inner_;
  asio::steady_timer gate_;
  bool held_ = false;
};

const std::vector<std::string> kTags{"customer:B1", "doc:Customer/B1"};

}  // namespace

// Issue 10, defect 4: the writer's own instance drops its L1 entries, then deletes Redis's; a
// lookup by another worker in between finds the old entry in Redis and puts it back into L1. The
// barrier drops them again once Redis's are gone, so the write's answer never leaves with an old
// entry in L1. (With only the first drop, the last read below is an L1 hit on "old".)
TEST(Barrier, ALookupBetweenTheLocalDropAndTheRedisDeleteLeavesNothingOldInL1) {
  ReadWorld w;  // the other worker's read path, on the same L1, log and trust
  redis::Client queue(w.ioc, test::service_config().redis_queue, "queue");
  queue.start();
  HeldRemote held(w.ioc, w.store);
  invalidation::Invalidator invalidator(held, queue, nullptr, invalidation::Settings{w.site});
  invalidation::Acks acks;
  invalidation::Local local{w.l1, w.log, w.trust};
  invalidation::Barrier barrier(invalidator, acks, local, "writer", invalidation::Timing{});

  w.fill("k", "old", kTags);
  bool settled = false;
  asio::co_spawn(
      w.ioc,
      [](invalidation::Barrier& b, bool& done) -> asio::awaitable<void> {
        invalidation::Event event{"outbox:1", kTags, "pitstop", invalidation::utc_now(), ""};
        co_await b.settle(std::move(event));
        done = true;
      }(barrier, settled),
      asio::detached);
  w.until([&] { return held.held(); });
  // Between the local drop and Redis's delete: the old entry is still in Redis.
  auto between = w.ask("k");
  w.until([&] { return between->has_value(); });
  EXPECT_EQ((*between)->served, Served::redis_hit);
  EXPECT_EQ((*between)->entry->body, "old") << "a read concurrent with the write may see either";
  held.release();
  w.until([&] { return settled; });
  // The write is answered now: what reads next must be the new state.
  auto after = w.ask("k");
  w.until([&] { return after->has_value() || w.source->pending() == 1; });
  ASSERT_FALSE(after->has_value()) << "answered " << cache::cache_status(**after) << " with " << (*after)->entry->body;
  w.source->answer(ReadWorld::ok("new", kTags));
  w.until([&] { return after->has_value(); });
  EXPECT_EQ((*after)->entry->body, "new");
}

TEST(Barrier, ItsEventSaysWhenRedisCouldNotBeCleared) {
  invalidation::Event e{"outbox:7", {"a", "b"}, "pitstop", "2026-12-03T10:00:00.000000Z", "site", "host:1:ab", false};
  const std::string json = invalidation::encode(e);
  EXPECT_NE(json.find("\"from\":\"host:1:ab\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"cleared\":false"), std::string::npos) << json;
  auto back = invalidation::decode(json);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->from, "host:1:ab");
  EXPECT_FALSE(back->cleared);
  // The usual event carries neither.
  e.from.clear();
  e.cleared = true;
  const std::string plain = invalidation::encode(e);
  EXPECT_EQ(plain.find("from"), std::string::npos);
  EXPECT_EQ(plain.find("cleared"), std::string::npos);
  EXPECT_TRUE(invalidation::decode(plain)->cleared);
  // Hostile events are refused, never half-read.
  for (const char* bad : {"", "{", "[]", "{\"id\":1}", "{\"id\":\"x\",\"tags\":[1]}", "{\"id\":\"x\",\"tags\":\"a\"}"})
    EXPECT_FALSE(invalidation::decode(bad)) << bad;
}

TEST(Acks, AWriterWakesWhenEveryMemberAcknowledgedAndNamesThoseThatDidNot) {
  invalidation::Acks acks;
  asio::io_context writer{1};
  // All acknowledge, from another thread (the subscriber's worker).
  auto w = acks.expect("outbox:1");
  acks.members(w, {"a", "b"});
  std::thread subscriber([&] {
    acks.ack("outbox:1", "a");
    acks.ack("outbox:1", "someone-else");  // not waited for: ignored
    acks.ack("outbox:2", "b");             // another event
    acks.ack("outbox:1", "b");
  });
  std::vector<std::string> missing{"unset"};
  const auto started = std::chrono::steady_clock::now();
  test::run(writer, [](invalidation::Acks& a, std::shared_ptr<invalidation::Acks::Wait> w, std::vector<std::string>& out) -> asio::awaitable<void> {
    out = co_await a.wait(w, std::chrono::steady_clock::now() + 10s);
  }(acks, w, missing));
  subscriber.join();
  EXPECT_TRUE(missing.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "woke at its deadline, not at the last acknowledgement";
  EXPECT_EQ(acks.waiting(), 0u);
  // One stays silent: named at the deadline.
  auto w2 = acks.expect("outbox:3");
  acks.members(w2, {"a", "silent"});
  acks.ack("outbox:3", "a");
  test::run(writer, [](invalidation::Acks& a, std::shared_ptr<invalidation::Acks::Wait> w, std::vector<std::string>& out) -> asio::awaitable<void> {
    out = co_await a.wait(w, std::chrono::steady_clock::now() + 50ms);
  }(acks, w2, missing));
  EXPECT_EQ(missing, std::vector<std::string>{"silent"});
  // Acknowledgements that come before the members are known still count.
  auto w3 = acks.expect("outbox:4");
  acks.ack("outbox:4", "early");
  acks.members(w3, {"early"});
  test::run(writer, [](invalidation::Acks& a, std::shared_ptr<invalidation::Acks::Wait> w, std::vector<std::string>& out) -> asio::awaitable<void> {
    out = co_await a.wait(w, std::chrono::steady_clock::now() + 10s);
  }(acks, w3, missing));
  EXPECT_TRUE(missing.empty());
}
