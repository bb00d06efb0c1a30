#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>

#include "proxy/cache/cache.hpp"

namespace pitstop::cache {

namespace asio = boost::asio;

struct Flights::Flight {
  std::mutex m;
  bool done = false;
  OutcomePtr outcome;
  // Each follower waits on a timer of its own executor; finish() posts the wake-up there,
  // because a timer may only be touched from its own thread.
  std::vector<std::pair<asio::any_io_executor, std::shared_ptr<asio::steady_timer>>> waiters;
};

Flights::Shard& Flights::shard_for(std::string_view key) { return shards_[std::hash<std::string_view>{}(key) % 16]; }

Flights::Ticket Flights::join(const std::string& key) {
  Shard& s = shard_for(key);
  std::lock_guard lock(s.m);
  auto [it, fresh] = s.flights.try_emplace(key);
  if (fresh) it->second = std::make_shared<Flight>();
  return {it->second, fresh};
}

void Flights::finish(const std::string& key, const std::shared_ptr<Flight>& flight, OutcomePtr outcome) {
  {
    Shard& s = shard_for(key);
    std::lock_guard lock(s.m);
    if (auto it = s.flights.find(key); it != s.flights.end() && it->second == flight) s.flights.erase(it);
  }
  decltype(Flight::waiters) waiters;
  {
    std::lock_guard lock(flight->m);
    flight->done = true;
    flight->outcome = std::move(outcome);
    waiters.swap(flight->waiters);
  }
  for (auto& [ex, timer] : waiters) asio::post(ex, [t = timer] { t->cancel(); });
}

asio::awaitable<OutcomePtr> Flights::wait(std::shared_ptr<Flight> flight, std::chrono::steady_clock::time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto timer = std::make_shared<asio::steady_timer>(ex, deadline);
  {
    std::lock_guard lock(flight->m);
    if (flight->done) co_return flight->outcome;
    flight->waiters.emplace_back(ex, timer);
  }
  co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
  std::lock_guard lock(flight->m);
  if (flight->done) co_return flight->outcome;
  std::erase_if(flight->waiters, [&](const auto& w) { return w.second == timer; });
  co_return nullptr;
}

std::size_t Flights::waiting(const std::string& key) {
  std::shared_ptr<Flight> flight;
  {
    Shard& s = shard_for(key);
    std::lock_guard lock(s.m);
    auto it = s.flights.find(key);
    if (it == s.flights.end()) return 0;
    flight = it->second;
  }
  std::lock_guard lock(flight->m);
  return flight->waiters.size();
}

std::size_t Flights::in_flight() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.m);
    n += s.flights.size();
  }
  return n;
}

}  // namespace pitstop::cache
