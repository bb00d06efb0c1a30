#pragma once
// A read path to play with: one io_context that runs only when the test pumps it, a clock the
// test moves, an origin that answers when the test says so, and the real Redis of
// scripts/services behind a cache::Store.
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>

#include "proxy/cache/read_through.hpp"
#include "proxy/cache/store.hpp"
#include "proxy/redis/client.hpp"
#include "tests/support/support.hpp"

namespace pitstop::test {

class FakeClock final : public cache::Clock {
 public:
  std::int64_t wall_ms() const override { return t; }
  std::int64_t t = cache::now_ms();
};

// Each fetch waits until the test answers it (oldest first).
class ScriptedSource final : public cache::Source {
 public:
  explicit ScriptedSource(boost::asio::io_context& ioc) : ioc_(ioc) {}

  boost::asio::awaitable<cache::Fetched> fetch() override {
    ++calls_;
    auto gate = std::make_shared<Gate>(ioc_);
    pending_.push_back(gate);
    co_await gate->timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    co_return gate->answer;
  }
  void answer(cache::Fetched f) {
    if (pending_.empty()) throw std::logic_error("no fetch is waiting for an answer");
    auto gate = pending_.front();
    pending_.pop_front();
    gate->answer = std::move(f);
    gate->timer.cancel();
  }
  std::size_t pending() const { return pending_.size(); }
  int calls() const { return calls_; }

 private:
  struct Gate {
    explicit Gate(boost::asio::io_context& ioc) : timer(ioc, std::chrono::steady_clock::time_point::max()) {}
    boost::asio::steady_timer timer;
    cache::Fetched answer;
  };
  boost::asio::io_context& ioc_;
  std::deque<std::shared_ptr<Gate>> pending_;
  int calls_ = 0;
};

// One instance's read path (one worker). Two worlds built with the same site share Redis.
struct ReadWorld {
  static std::string new_site() {
    static int n = 0;
    return "rt-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
  }

  explicit ReadWorld(std::string site_ = new_site(), std::chrono::milliseconds follower_wait = std::chrono::seconds(10),
                     bool enabled = true)
      : site(std::move(site_)),
        client(ioc, service_config().redis_cache, "test"),
        store(client, site),
        l1(1 << 20),
        rt(ioc.get_executor(), l1, store, flights, log, trust, clock,
           cache::ReadSettings{.enabled = enabled, .follower_wait = follower_wait}),
        source(std::make_shared<ScriptedSource>(ioc)) {
    client.start();
    trust.prove_until(std::chrono::steady_clock::time_point::max());
    trust.relay_caught_up(std::chrono::steady_clock::now());
  }

  // Starts a read of `key` (ttl 60 s, stale-while-revalidate 10 s, stale-if-error 120 s); the
  // answer appears when the io_context has run far enough.
  std::shared_ptr<std::optional<cache::Answer>> ask(const std::string& key) {
    auto out = std::make_shared<std::optional<cache::Answer>>();
    cache::Read read{key, {60'000, 10'000, 120'000}, source};
    boost::asio::co_spawn(
        ioc, [](cache::ReadThrough& rt, cache::Read r, std::shared_ptr<std::optional<cache::Answer>> o) -> boost::asio::awaitable<void> {
          *o = co_await rt.serve(std::move(r));
        }(rt, std::move(read), out),
        boost::asio::detached);
    return out;
  }

  // Runs the io_context until `done()` (Redis replies, timers); fails past `limit`.
  void until(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("the read path never got there");
      ioc.restart();
      ioc.run_one_for(std::chrono::milliseconds(5));
    }
  }

  // Runs what is ready to run, without waiting for anything (Redis, timers).
  void run_ready() {
    ioc.restart();
    ioc.poll();
  }

  // A stored answer for `key`, through the read path.
  void fill(const std::string& key, const std::string& body, std::vector<std::string> tags) {
    auto a = ask(key);
    until([&] { return source->pending() == 1; });
    source->answer(ok(body, std::move(tags)));
    until([&] { return a->has_value(); });
    if ((*a)->served != cache::Served::stored) throw std::runtime_error("fill was not stored");
  }

  static cache::Fetched ok(std::string body, std::vector<std::string> tags) {
    cache::Fetched f;
    f.body = std::move(body);
    f.tags = std::move(tags);
    return f;
  }
  static cache::Fetched failure(unsigned status, bool transient) {
    cache::Fetched f;
    f.status = status;
    f.body = R"({"exc_type":"Failure"})";
    f.transient = transient;
    return f;
  }

  std::string site;
  boost::asio::io_context ioc{1};
  redis::Client client;
  cache::Store store;
  cache::L1 l1;
  cache::Flights flights;
  cache::InvalidationLog log;
  cache::Trust trust;
  FakeClock clock;
  cache::ReadThrough rt;
  std::shared_ptr<ScriptedSource> source;
};

}  // namespace pitstop::test
