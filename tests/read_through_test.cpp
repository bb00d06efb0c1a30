// The read path's states and interleavings, played step by step: a scripted origin that answers
// when the test says so, a clock the test moves, the real Redis of scripts/services behind the
// cache::Store, and one io_context that runs only when the test pumps it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <functional>

#include "proxy/cache/read_through.hpp"
#include "proxy/cache/store.hpp"
#include "tests/read_through_support.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
using namespace pitstop;
using namespace std::chrono_literals;
using cache::Answer;
using cache::Served;
using pitstop::test::ReadWorld;

namespace {

const std::vector<std::string> kTags{"customer:C1", "doc:Customer/C1"};

}  // namespace

TEST(CacheStatus, EveryWayOfServingHasItsField) {
  auto status = [](Answer a) { return cache::cache_status(a); };
  EXPECT_EQ(status({.served = Served::l1_hit, .ttl_s = 42}), "pitstop; hit; ttl=42; detail=l1");
  EXPECT_EQ(status({.served = Served::redis_hit, .ttl_s = 7}), "pitstop; hit; ttl=7; detail=redis");
  EXPECT_EQ(status({.served = Served::stale_while_revalidate, .ttl_s = -3}), "pitstop; hit; ttl=-3; detail=stale-while-revalidate");
  EXPECT_EQ(status({.served = Served::collapsed}), "pitstop; fwd=uri-miss; collapsed");
  EXPECT_EQ(status({.served = Served::stored}), "pitstop; fwd=uri-miss; stored");
  EXPECT_EQ(status({.served = Served::stored, .had_stale = true}), "pitstop; fwd=stale; stored");
  EXPECT_EQ(status({.served = Served::fetched, .redis_down = true}), "pitstop; fwd=uri-miss; detail=redis-down");
  EXPECT_EQ(status({.served = Served::stale_if_error, .had_stale = true, .fwd_status = 503, .ttl_s = -30}),
            "pitstop; fwd=stale; fwd-status=503; ttl=-30; detail=stale-if-error");
  EXPECT_EQ(status({.served = Served::origin_error, .fwd_status = 404}), "pitstop; fwd=uri-miss; fwd-status=404");
  EXPECT_EQ(status({.served = Served::timeout}), "pitstop; fwd=uri-miss; detail=timeout");
  EXPECT_EQ(status({.served = Served::refused}), "pitstop; detail=refused");
  EXPECT_EQ(status({.served = Served::bypass}), "pitstop; fwd=bypass; detail=cache-off");
  EXPECT_EQ(status({.served = Served::write}), "pitstop; fwd=method");
}

TEST(InvalidationLog, EpochsOrderInvalidationsAndPrunedQuestionsAreAnsweredYes) {
  cache::InvalidationLog log(8);
  const auto before = log.now();
  const std::vector<std::string> a{"a"}, b{"b"};
  EXPECT_FALSE(log.invalidated_since(a, before));
  const auto e1 = log.record(a);
  EXPECT_GT(e1, before);
  EXPECT_TRUE(log.invalidated_since(a, before));
  EXPECT_FALSE(log.invalidated_since(a, e1)) << "a fill that began after the invalidation is not affected by it";
  EXPECT_FALSE(log.invalidated_since(b, before));
  // Past its capacity the log forgets its oldest half; a fill older than what it forgot is
  // refused, whatever its tags.
  for (int i = 0; i < 20; ++i) {
    const std::vector<std::string> t{std::string("t").append(std::to_string(i))};
    log.record(t);
  }
  EXPECT_TRUE(log.invalidated_since(b, before));
  EXPECT_FALSE(log.invalidated_since(b, log.now()));
}

TEST(ReadThrough, MissIsFetchedAndStoredThenHitFromL1) {
  ReadWorld w;
  auto first = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  w.source->answer(ReadWorld::ok("v1", kTags));
  w.until([&] { return first->has_value(); });
  EXPECT_EQ((*first)->served, Served::stored);
  EXPECT_EQ((*first)->entry->body, "v1");
  auto second = w.ask("k");
  w.until([&] { return second->has_value(); });
  EXPECT_EQ((*second)->served, Served::l1_hit);
  EXPECT_EQ((*second)->ttl_s, 60);
  EXPECT_EQ(w.source->calls(), 1);
}

TEST(ReadThrough, AnotherInstanceFindsTheAnswerInRedis) {
  ReadWorld a, b(a.site);
  auto fill = a.ask("k");
  a.until([&] { return a.source->pending() == 1; });
  a.source->answer(ReadWorld::ok("shared", kTags));
  a.until([&] { return fill->has_value(); });
  auto there = b.ask("k");
  b.until([&] { return there->has_value(); });
  EXPECT_EQ((*there)->served, Served::redis_hit);
  EXPECT_EQ((*there)->entry->body, "shared");
  auto again = b.ask("k");
  b.until([&] { return again->has_value(); });
  EXPECT_EQ((*again)->served, Served::l1_hit);
  EXPECT_EQ(b.source->calls(), 0);
}

TEST(ReadThrough, ConcurrentMissesAreFetchedOnce) {
  ReadWorld w;
  std::vector<std::shared_ptr<std::optional<Answer>>> answers;
  for (int i = 0; i < 5; ++i) answers.push_back(w.ask("k"));
  w.until([&] { return w.source->pending() == 1; });
  w.source->answer(ReadWorld::ok("once", kTags));
  w.until([&] { return std::all_of(answers.begin(), answers.end(), [](auto& a) { return a->has_value(); }); });
  EXPECT_EQ(w.source->calls(), 1);
  int stored = 0, collapsed = 0;
  for (auto& a : answers) {
    EXPECT_EQ((*a)->entry->body, "once");
    stored += (*a)->served == Served::stored;
    collapsed += (*a)->served == Served::collapsed;
  }
  EXPECT_EQ(stored, 1);
  EXPECT_EQ(collapsed, 4);
}

TEST(ReadThrough, ExpiredAnswerIsServedWhileOneRefreshRuns) {
  ReadWorld w;
  w.fill("k", "old", kTags);
  w.clock.t += 61'000;  // ttl 60 s, stale-while-revalidate 10 s
  auto stale = w.ask("k");
  w.until([&] { return stale->has_value(); });
  EXPECT_EQ((*stale)->served, Served::stale_while_revalidate);
  EXPECT_EQ((*stale)->entry->body, "old");
  EXPECT_EQ((*stale)->ttl_s, -1);
  // A second request in the window does not start a second refresh.
  auto stale2 = w.ask("k");
  w.until([&] { return stale2->has_value() && w.source->pending() == 1; });
  EXPECT_EQ((*stale2)->served, Served::stale_while_revalidate);
  w.source->answer(ReadWorld::ok("new", kTags));
  w.until([&] { return w.flights.in_flight() == 0; });
  auto fresh = w.ask("k");
  w.until([&] { return fresh->has_value(); });
  EXPECT_EQ((*fresh)->served, Served::l1_hit);
  EXPECT_EQ((*fresh)->entry->body, "new");
  EXPECT_EQ(w.source->calls(), 2);
}

TEST(ReadThrough, ExpiredAnswerStandsInWhenTheOriginFails) {
  ReadWorld w;
  w.fill("k", "old", kTags);
  w.clock.t += 75'000;  // past stale-while-revalidate (70 s), within stale-if-error (60 + 120 s)
  auto covered = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  w.source->answer(ReadWorld::failure(503, true));
  w.until([&] { return covered->has_value(); });
  EXPECT_EQ((*covered)->served, Served::stale_if_error);
  EXPECT_EQ((*covered)->fwd_status, 503u);
  EXPECT_EQ((*covered)->entry->body, "old");
  EXPECT_EQ(cache::cache_status(**covered), "pitstop; fwd=stale; fwd-status=503; ttl=-15; detail=stale-if-error");
  // A failure that is the answer (not found) is not covered, and not cached.
  auto missing = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  w.source->answer(ReadWorld::failure(404, false));
  w.until([&] { return missing->has_value(); });
  EXPECT_EQ((*missing)->served, Served::origin_error);
  EXPECT_EQ((*missing)->entry->status, 404u);
  // Past every window nothing stands in.
  w.clock.t += 200'000;
  auto bare = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  w.source->answer(ReadWorld::failure(503, true));
  w.until([&] { return bare->has_value(); });
  EXPECT_EQ((*bare)->served, Served::origin_error);
  EXPECT_FALSE((*bare)->had_stale) << "the dead entry was dropped, not offered";
}

TEST(ReadThrough, AFollowerGivesUpAtTheOriginTimeout) {
  ReadWorld w(ReadWorld::new_site(), 50ms);
  auto leader = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  auto follower = w.ask("k");
  w.until([&] { return follower->has_value(); });
  EXPECT_EQ((*follower)->served, Served::timeout);
  EXPECT_FALSE((*follower)->entry);
  EXPECT_EQ(cache::cache_status(**follower), "pitstop; fwd=uri-miss; detail=timeout");
  w.source->answer(ReadWorld::ok("late", kTags));
  w.until([&] { return leader->has_value(); });
  EXPECT_EQ((*leader)->served, Served::stored);
}

TEST(ReadThrough, AFillOvertakenByAnInvalidationIsAnsweredNotKept) {
  ReadWorld w;
  auto first = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  w.log.record(std::vector<std::string>{"customer:C1"});  // a write committed while the origin was read
  w.source->answer(ReadWorld::ok("maybe old", kTags));
  w.until([&] { return first->has_value(); });
  EXPECT_EQ((*first)->served, Served::fetched);
  auto second = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  w.source->answer(ReadWorld::ok("new", kTags));
  w.until([&] { return second->has_value(); });
  EXPECT_EQ((*second)->served, Served::stored) << "nothing was kept from the overtaken fill, in L1 or Redis";
  EXPECT_EQ(w.source->calls(), 2);
}

TEST(ReadThrough, WithCachingOffEveryReadGoesToTheOrigin) {
  ReadWorld w(ReadWorld::new_site(), 10s, false);
  for (int i = 0; i < 2; ++i) {
    // Appended, not "v" + to_string(i): GCC 12 at -O3 warns falsely on that (-Wrestrict, PR 105329).
    std::string body = "v";
    body += std::to_string(i);
    auto a = w.ask("k");
    w.until([&] { return w.source->pending() == 1; });
    w.source->answer(ReadWorld::ok(body, kTags));
    w.until([&] { return a->has_value(); });
    EXPECT_EQ((*a)->served, Served::bypass);
    EXPECT_EQ((*a)->entry->body, body);
  }
  EXPECT_EQ(w.source->calls(), 2);
}

// Issue 10, defect 2: a request that arrives after an invalidation must not be handed the answer of
// a fetch that began before it.
TEST(ReadThrough, ARequestArrivingAfterAnInvalidationNeverTakesAnOlderFetch) {
  ReadWorld w;
  w.trust.l2_failed();  // no Redis: each request goes straight to the flight, in one run_ready()
  auto before = w.ask("k");  // its fetch reads the origin before the write commits
  w.until([&] { return w.source->pending() == 1; });
  w.log.record(std::vector<std::string>{"doc:Customer/C1"});  // the write's invalidation reaches this instance
  std::vector<std::shared_ptr<std::optional<Answer>>> after;
  for (int i = 0; i < 3; ++i) after.push_back(w.ask("k"));
  w.run_ready();  // all three wait behind the first fetch now
  ASSERT_EQ(w.flights.waiting("k"), 3u);
  w.source->answer(ReadWorld::ok("old", kTags));
  w.until([&] { return before->has_value(); });
  EXPECT_EQ((*before)->entry->body, "old") << "the request that began before the write may see either";
  // The three that came after fetch again, once, together.
  w.until([&] { return w.source->pending() == 1 || after[0]->has_value(); });
  ASSERT_FALSE(after[0]->has_value()) << "took the older fetch's answer: " << (*after[0])->entry->body;
  w.source->answer(ReadWorld::ok("new", kTags));
  w.until([&] { return std::all_of(after.begin(), after.end(), [](auto& a) { return a->has_value(); }); });
  int stored = 0;
  for (auto& a : after) {
    EXPECT_EQ((*a)->entry->body, "new");
    stored += (*a)->served == Served::stored;
  }
  EXPECT_EQ(stored, 1);
  EXPECT_EQ(w.source->calls(), 2);
}

TEST(ReadThrough, AnErrorAnswerFromBeforeAWriteIsNotHandedToALaterRequest) {
  ReadWorld w;
  w.trust.l2_failed();
  auto before = w.ask("k");  // the document does not exist yet
  w.until([&] { return w.source->pending() == 1; });
  w.log.record(std::vector<std::string>{"doc:Customer/C1"});  // now it does
  auto after = w.ask("k");
  w.run_ready();
  ASSERT_EQ(w.flights.waiting("k"), 1u);
  w.source->answer(ReadWorld::failure(404, false));
  w.until([&] { return before->has_value(); });
  EXPECT_EQ((*before)->served, Served::origin_error);
  w.until([&] { return w.source->pending() == 1 || after->has_value(); });
  ASSERT_FALSE(after->has_value()) << "took the older fetch's answer: " << (*after)->entry->status;
  w.source->answer(ReadWorld::ok("created", kTags));
  w.until([&] { return after->has_value(); });
  EXPECT_EQ((*after)->entry->body, "created");
}

TEST(ReadThrough, WithoutProofOfHearingEventsARequestOnlyTakesAFetchThatBeganAfterIt) {
  ReadWorld w;
  auto before = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  // The instance can no longer prove it hears invalidations: a write elsewhere may have committed
  // that it knows nothing of.
  w.trust.fence();
  auto after = w.ask("k");
  w.until([&] { return w.flights.waiting("k") == 1; });
  w.source->answer(ReadWorld::ok("maybe old", kTags));
  w.until([&] { return before->has_value(); });
  w.until([&] { return w.source->pending() == 1 || after->has_value(); });
  ASSERT_FALSE(after->has_value()) << "took the older fetch's answer: " << (*after)->entry->body;
  w.source->answer(ReadWorld::ok("new", kTags));
  w.until([&] { return after->has_value(); });
  EXPECT_EQ((*after)->entry->body, "new");
  // And nothing answers from L1 meanwhile.
  auto again = w.ask("k");
  w.until([&] { return again->has_value(); });
  EXPECT_EQ((*again)->served, Served::redis_hit);
}

TEST(ReadThrough, NothingFromAnEarlierGenerationEntersL1) {
  ReadWorld w;
  auto fill = w.ask("k");
  w.until([&] { return w.source->pending() == 1; });
  // Trust lapsed and came back while the origin was read: L1 was emptied, and this fill began
  // before, when events may have been missed.
  w.trust.next_generation();
  w.source->answer(ReadWorld::ok("v", kTags));
  w.until([&] { return fill->has_value(); });
  auto next = w.ask("k");
  w.until([&] { return next->has_value(); });
  EXPECT_EQ((*next)->served, Served::redis_hit) << "the fill kept in L1 across a generation";
  auto then = w.ask("k");
  w.until([&] { return then->has_value(); });
  EXPECT_EQ((*then)->served, Served::l1_hit) << "what this generation looked up is kept";
}
