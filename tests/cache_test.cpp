#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <random>
#include <thread>

#include "proxy/cache/cache.hpp"
#include "proxy/cache/store.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
using namespace pitstop;
using namespace std::chrono_literals;
using cache::Entry;
using cache::EntryPtr;

namespace {

EntryPtr make(const std::string& key, std::size_t body_bytes = 100, std::vector<std::string> tags = {}, std::int64_t ttl_ms = 60000) {
  auto e = std::make_shared<Entry>();
  e->key = key;
  e->body = std::string(body_bytes, 'b');
  e->etag = cache::strong_etag(e->body);
  e->tags = std::move(tags);
  e->stored_ms = cache::now_ms();
  e->ttl_ms = ttl_ms;
  return e;
}

}  // namespace

TEST(Entry, EncodingRoundTrips) {
  Entry e = *make("site\x1fkey", 1000, {"customer:C-1", "doc:Customer/C-1"});
  e.swr_ms = 5000;
  e.sie_ms = 60000;
  e.body = std::string("{\"message\":\"\0\xff\"}", 16);
  auto back = cache::decode(cache::encode(e));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->key, e.key);
  EXPECT_EQ(back->body, e.body);
  // Tags travel as their hashes: what L1 indexes by, a fraction of the bytes.
  EXPECT_TRUE(back->tags.empty());
  ASSERT_EQ(back->tag_hashes.size(), 2u);
  EXPECT_EQ(back->tag_hashes[0], cache::tag_hash("customer:C-1"));
  EXPECT_EQ(back->tag_hashes[1], cache::tag_hash("doc:Customer/C-1"));
  EXPECT_EQ(back->etag, e.etag);
  EXPECT_EQ(back->stored_ms, e.stored_ms);
  EXPECT_EQ(back->ttl_ms, e.ttl_ms);
  EXPECT_EQ(back->swr_ms, e.swr_ms);
  EXPECT_EQ(back->sie_ms, e.sie_ms);
}

TEST(Entry, HostileBytesNeverDecode) {
  const std::string good = cache::encode(*make("k", 50, {"t"}));
  // Every truncation, and every single-byte change of the header, is refused or decodes to an
  // entry whose fields stay within the input.
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(cache::decode(good.substr(0, n))) << n;
  EXPECT_FALSE(cache::decode(good + "x"));
  std::mt19937 rng(7);
  for (int i = 0; i < 5000; ++i) {
    std::string junk(rng() % 200, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    if (i % 2) junk.replace(0, std::min<std::size_t>(4, junk.size()), "PSE3");
    auto r = cache::decode(junk);
    if (r) {
      EXPECT_LE(r->body.size(), junk.size());
    }
  }
  // A length field claiming 4 GiB.
  std::string huge = good;
  for (int i = 0; i < 4; ++i) huge[4 + 4 + 32 + i] = '\xff';
  EXPECT_FALSE(cache::decode(huge));
}

// Instances of different builds share entries through Redis: the hash is part of the format.
TEST(Entry, TagHashIsStableAcrossBuilds) {
  EXPECT_EQ(cache::tag_hash("doc:Customer/CUST-00001"), 0x8bad3216505da75cULL);
  EXPECT_NE(cache::tag_hash("doc:Customer/CUST-00001"), cache::tag_hash("doc:Customer/CUST-00002"));
  // An entry written by the previous format is a miss, not garbage.
  std::string old = cache::encode(*make("k", 10, {"t"}));
  old[3] = '1';
  EXPECT_FALSE(cache::decode(old));
}

TEST(Entry, FreshnessAndTtl) {
  Entry e;
  e.stored_ms = 1'000'000;
  e.ttl_ms = 10'000;
  e.swr_ms = 5'000;
  EXPECT_TRUE(e.fresh(1'005'000));
  EXPECT_EQ(e.ttl_left_s(1'000'500), 9);
  EXPECT_FALSE(e.fresh(1'010'000));
  EXPECT_EQ(e.ttl_left_s(1'010'001), -1);
  EXPECT_FALSE(e.dead(1'014'999));
  EXPECT_TRUE(e.dead(1'015'000));
}

TEST(Entry, EtagComparison) {
  const std::string etag = "\"abc\"";
  EXPECT_TRUE(cache::etag_matches("\"abc\"", etag));
  EXPECT_TRUE(cache::etag_matches("W/\"abc\"", etag));
  EXPECT_TRUE(cache::etag_matches("\"x\", \"abc\"", etag));
  EXPECT_TRUE(cache::etag_matches("*", etag));
  EXPECT_FALSE(cache::etag_matches("\"abcd\"", etag));
  EXPECT_FALSE(cache::etag_matches("abc", etag));
  EXPECT_FALSE(cache::etag_matches("\"ab", etag));
  EXPECT_FALSE(cache::etag_matches("", etag));
  EXPECT_NE(cache::strong_etag("a"), cache::strong_etag("b"));
  EXPECT_EQ(cache::strong_etag("a").size(), 34u);
}

TEST(L1, KeepsWithinItsBytesEvictingLeastRecentlyUsed) {
  cache::L1 l1(64 * 1024, 1);
  const std::int64_t now = cache::now_ms();
  for (int i = 0; i < 100; ++i) {
    l1.put(make(std::string("k").append(std::to_string(i)), 1000));
    // k0 stays in use, so it is never the least recently used.
    ASSERT_TRUE(l1.get("k0", now)) << i;
  }
  auto s = l1.stats();
  EXPECT_LE(s.bytes, 64u * 1024);
  EXPECT_GT(s.evictions, 0u);
  EXPECT_TRUE(l1.get("k0", now));
  EXPECT_TRUE(l1.get("k99", now));
  EXPECT_FALSE(l1.get("k1", now));
  // An entry larger than the cache is not kept.
  l1.put(make("big", 100 * 1024));
  EXPECT_FALSE(l1.get("big", now));
}

// One budget for the whole L1: answers far larger than a shard's share (a day's schedule) are
// kept as long as the total fits, and the total never ends above the budget.
TEST(L1, LargeAnswersShareOneBudgetAcrossShards) {
  cache::L1 l1(1 << 20, 64);
  const std::int64_t now = cache::now_ms();
  for (int i = 0; i < 8; ++i) l1.put(make("big" + std::to_string(i), 100 * 1024));
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(l1.get("big" + std::to_string(i), now)) << i;
  for (int i = 8; i < 40; ++i) {
    l1.put(make("big" + std::to_string(i), 100 * 1024));
    EXPECT_TRUE(l1.get("big" + std::to_string(i), now)) << "the newest is kept: " << i;
    EXPECT_LE(l1.stats().bytes, 1u << 20);
  }
  const auto st = l1.stats();
  EXPECT_GE(st.entries, 7u) << "evictions stop once the total fits";
  EXPECT_GT(st.evictions, 0u);
  // More than a quarter of the whole is not kept.
  l1.put(make("huge", 300 * 1024));
  EXPECT_FALSE(l1.get("huge", now));
}

// An entry read back from Redis carries tag hashes only, and is invalidated by its tags.
TEST(L1, EntriesFromRedisAreInvalidatedByTheirTags) {
  cache::L1 l1(1 << 20);
  auto back = cache::decode(cache::encode(*make("r", 10, {"customer:1", "doc:Customer/1"})));
  ASSERT_TRUE(back);
  l1.put(std::make_shared<const Entry>(std::move(*back)));
  ASSERT_TRUE(l1.get("r", cache::now_ms()));
  EXPECT_EQ(l1.invalidate_tag("customer:2"), 0u);
  EXPECT_EQ(l1.invalidate_tag("doc:Customer/1"), 1u);
  EXPECT_FALSE(l1.get("r", cache::now_ms()));
}

TEST(L1, DropsDeadEntriesAndInvalidatesByTag) {
  cache::L1 l1(1 << 20);
  l1.put(make("a", 10, {"customer:1", "doctype:Customer"}));
  l1.put(make("b", 10, {"customer:2", "doctype:Customer"}));
  l1.put(make("c", 10, {"customer:1"}));
  l1.put(make("dead", 10, {}, 1));
  const std::int64_t now = cache::now_ms();
  EXPECT_FALSE(l1.get("dead", now + 10));
  EXPECT_EQ(l1.invalidate_tag("customer:1"), 2u);
  EXPECT_FALSE(l1.get("a", now));
  EXPECT_FALSE(l1.get("c", now));
  EXPECT_TRUE(l1.get("b", now));
  EXPECT_EQ(l1.invalidate_tag("doctype:Customer"), 1u);
  EXPECT_EQ(l1.invalidate_tag("nothing"), 0u);
  EXPECT_EQ(l1.stats().entries, 0u);
  // Replacing a key replaces its tags.
  l1.put(make("x", 10, {"t:old"}));
  l1.put(make("x", 10, {"t:new"}));
  EXPECT_EQ(l1.invalidate_tag("t:old"), 0u);
  EXPECT_EQ(l1.invalidate_tag("t:new"), 1u);
}

// Answers with thousands of tags (a day's schedule names every customer in it) churning through
// a small L1: invalidation stays exact and the tag index does not keep what was evicted.
TEST(L1, ManyTagsChurningStayExactAndBounded) {
  cache::L1 l1(64 * 1024, 1);
  std::vector<std::string> keys;
  for (int i = 0; i < 3000; ++i) {
    std::vector<std::string> tags{"shared"};
    for (int t = 0; t < 40; ++t) tags.push_back(std::string("e").append(std::to_string(i)).append(":").append(std::to_string(t)));
    l1.put(make(std::string("k").append(std::to_string(i)), 100, std::move(tags)));
  }
  const auto st = l1.stats();
  ASSERT_GT(st.entries, 0u);
  ASSERT_LT(st.entries, 3000u);  // most were evicted
  EXPECT_LE(st.tag_refs, 2 * 41 * st.entries + 4096 + 41) << "evicted entries' tags are swept";
  EXPECT_EQ(l1.invalidate_tag("e0:7"), 0u);     // long evicted
  EXPECT_EQ(l1.invalidate_tag("e2999:7"), 1u);  // the newest
  EXPECT_FALSE(l1.get("k2999", cache::now_ms()));
  EXPECT_EQ(l1.invalidate_tag("e2999:8"), 0u);  // its other tags lead nowhere now
  EXPECT_EQ(l1.invalidate_tag("shared"), st.entries - 1);
  EXPECT_EQ(l1.stats().entries, 0u);
  // A key put again after a removal is found by its new tags only.
  l1.put(make("again", 10, {"t:1"}));
  l1.erase("again");
  l1.put(make("again", 10, {"t:2"}));
  EXPECT_EQ(l1.invalidate_tag("t:1"), 0u);
  EXPECT_EQ(l1.invalidate_tag("t:2"), 1u);
}

TEST(L1, IsSafeUnderContention) {
  cache::L1 l1(256 * 1024, 8);
  std::atomic<int> hits{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 20000; ++i) {
        std::string key = std::string("k").append(std::to_string(rng() % 500));
        if (rng() % 4 == 0) l1.put(make(key, 200, {"tag" + std::to_string(rng() % 10)}));
        else if (auto e = l1.get(key, cache::now_ms()); e && e->key == key) ++hits;
        if (rng() % 1000 == 0) l1.invalidate_tag("tag" + std::to_string(rng() % 10));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_GT(hits.load(), 0);
  EXPECT_LE(l1.stats().bytes, 256u * 1024);
}

TEST(Flights, OneLeaderManyFollowersAcrossThreads) {
  cache::Flights flights;
  asio::io_context a{1}, b{1};
  auto guard_a = asio::make_work_guard(a);
  auto guard_b = asio::make_work_guard(b);
  std::thread ta([&] { a.run(); });
  std::thread tb([&] { b.run(); });
  std::atomic<int> leaders{0}, got{0};
  std::vector<std::shared_ptr<cache::Flights::Flight>> led;
  std::mutex m;
  auto follower = [](cache::Flights& f, std::shared_ptr<cache::Flights::Flight> flight, std::atomic<int>& got) -> asio::awaitable<void> {
    auto outcome = co_await f.wait(flight, std::chrono::steady_clock::now() + 5s);
    if (outcome && outcome->entry && outcome->entry->body == "answer") ++got;
  };
  for (int i = 0; i < 100; ++i) {
    auto ticket = flights.join("key");
    if (ticket.leader) {
      ++leaders;
      std::lock_guard lock(m);
      led.push_back(ticket.flight);
    } else {
      asio::co_spawn(i % 2 ? a : b, follower(flights, ticket.flight, got), asio::detached);
    }
  }
  EXPECT_EQ(leaders.load(), 1);
  EXPECT_EQ(flights.in_flight(), 1u);
  std::this_thread::sleep_for(50ms);
  auto outcome = std::make_shared<cache::Outcome>();
  auto e = std::make_shared<Entry>();
  e->body = "answer";
  outcome->entry = e;
  flights.finish("key", led[0], outcome);
  for (int i = 0; i < 200 && got < 99; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(got.load(), 99);
  EXPECT_EQ(flights.in_flight(), 0u);
  // After the flight, the next request leads again.
  EXPECT_TRUE(flights.join("key").leader);
  guard_a.reset();
  guard_b.reset();
  a.stop();
  b.stop();
  ta.join();
  tb.join();
}

TEST(Flights, FollowerGivesUpAtItsDeadline) {
  cache::Flights flights;
  asio::io_context ioc{1};
  auto leader = flights.join("slow");
  auto follower = flights.join("slow");
  ASSERT_TRUE(leader.leader);
  ASSERT_FALSE(follower.leader);
  bool timed_out = false;
  auto started = std::chrono::steady_clock::now();
  test::run(ioc, [](cache::Flights& f, std::shared_ptr<cache::Flights::Flight> fl, bool& out) -> asio::awaitable<void> {
    auto o = co_await f.wait(fl, std::chrono::steady_clock::now() + 100ms);
    out = !o;
  }(flights, follower.flight, timed_out));
  EXPECT_TRUE(timed_out);
  EXPECT_GE(std::chrono::steady_clock::now() - started, 90ms);
  flights.finish("slow", leader.flight, nullptr);
}

TEST(Store, EntriesAndTagSetsInRedis) {
  asio::io_context ioc{1};
  redis::Client client(ioc, test::service_config().redis_cache, "test");
  client.start();
  cache::Store store(client, "storetest" + std::to_string(::getpid()));
  auto e = make("store-key", 500, {"customer:X", "doctype:Customer"}, 5000);
  test::run(ioc, [](cache::Store& s, EntryPtr e, redis::Client& c) -> asio::awaitable<void> {
    auto looked = co_await s.get(e->key);
    EXPECT_TRUE(looked && !looked->entry && looked->redis_ms > 0);
    const std::int64_t since = looked ? looked->redis_ms : 0;
    auto stored = co_await s.put(*e, since);
    EXPECT_TRUE(stored && *stored);
    auto got = co_await s.get(e->key);
    EXPECT_TRUE(got && got->entry);
    if (got && got->entry) {
      EXPECT_EQ(got->entry->body, e->body);
      EXPECT_EQ(got->entry->tag_hashes.size(), e->tags.size());
      for (std::size_t i = 0; i < e->tags.size() && i < got->entry->tag_hashes.size(); ++i)
        EXPECT_EQ(got->entry->tag_hashes[i], cache::tag_hash(e->tags[i]));
    }
    auto miss = co_await s.get("other-key");
    EXPECT_TRUE(miss && !miss->entry);
    const std::string tk = s.tag_key("customer:X");
    const std::string_view members[] = {"SMEMBERS", tk};
    auto m = co_await c.command(members);
    EXPECT_TRUE(m && m->elements.size() == 1 && m->elements[0].str == s.entry_key(e->key));
    const std::string_view ttl[] = {"PTTL", tk};
    auto t = co_await c.command(ttl);
    EXPECT_TRUE(t && t->integer > 0 && t->integer <= 5000);
    // A value under the entry's name that is not an entry (or another key's) is a miss.
    const std::string ek = s.entry_key(e->key);
    const std::string_view corrupt[] = {"SET", ek, "garbage", "PX", "5000"};
    co_await c.command(corrupt);
    auto bad = co_await s.get(e->key);
    EXPECT_TRUE(bad && !bad->entry);
    auto other = make("someone-else", 10);
    const std::string blob = cache::encode(*other);
    const std::string_view forged[] = {"SET", ek, blob, "PX", "5000"};
    co_await c.command(forged);
    auto f = co_await s.get(e->key);
    EXPECT_TRUE(f && !f->entry);
  }(store, e, client));
}

TEST(Store, InvalidationDeletesEveryEntryOfATagAndRefusesLateFills) {
  asio::io_context ioc{1};
  redis::Client client(ioc, test::service_config().redis_cache, "test");
  client.start();
  cache::Store store(client, "invtest" + std::to_string(::getpid()));
  test::run(ioc, [](cache::Store& s) -> asio::awaitable<void> {
    auto a = make("a", 10, {"customer:1", "doctype:Customer"});
    auto b = make("b", 10, {"customer:1"});
    auto c = make("c", 10, {"customer:2"});
    auto before = co_await s.get("a");
    const std::int64_t since = before->redis_ms;
    for (const auto& e : {a, b, c}) {
      auto ok = co_await s.put(*e, since);
      EXPECT_TRUE(ok && *ok);
    }
    const std::vector<std::string> tags{"customer:1"};
    auto n = co_await s.invalidate(tags);
    EXPECT_TRUE(n && *n == 2);
    auto ga = co_await s.get("a");
    auto gb = co_await s.get("b");
    auto gc = co_await s.get("c");
    EXPECT_FALSE(ga->entry);
    EXPECT_FALSE(gb->entry);
    EXPECT_TRUE(gc->entry);
    // A fill that looked before the invalidation (since) may not store what it read.
    auto late = co_await s.put(*a, since);
    EXPECT_TRUE(late && !*late);
    EXPECT_FALSE((co_await s.get("a"))->entry);
    // One that looked after may.
    auto fresh_look = co_await s.get("a");
    auto ok = co_await s.put(*a, fresh_look->redis_ms + 1);
    EXPECT_TRUE(ok && *ok);
    EXPECT_TRUE((co_await s.get("a"))->entry);
    // Invalidating a tag nobody carries is fine.
    const std::vector<std::string> none{"nothing:here"};
    auto zero = co_await s.invalidate(none);
    EXPECT_TRUE(zero && *zero == 0);
  }(store));
}
