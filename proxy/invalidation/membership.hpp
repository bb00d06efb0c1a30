#pragma once
// Read-your-writes on every instance (ARCHITECTURE.md, "The write barrier").
//
// Every instance holds a lease in the queue Redis (a sorted set, instance -> end of lease on
// Redis's clock) and renews it every heartbeat, in the same script that publishes a ping to the
// instance's own channel. The ping comes back on the instance's subscription behind every event
// published before it, so when it arrives the instance knows it has heard everything up to the
// moment it sent it: it may use L1 for `fence` after that moment (its own monotonic clock), and
// not longer. A write publishes its event in a script that also reads the live leases; its
// response waits until each of those instances has acknowledged dropping the event's tags, or
// until the longest any of them could still be using L1 without having heard it (`fence_wait`
// after the publish). An instance that lapsed empties L1 when its proof comes back.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "proxy/cache/cache.hpp"
#include "proxy/cache/coherence.hpp"
#include "proxy/invalidation/invalidation.hpp"
#include "proxy/redis/client.hpp"
#include "proxy/metrics/metrics.hpp"

namespace pitstop::invalidation {

struct Timing {
  std::chrono::milliseconds heartbeat{50};
  std::chrono::milliseconds fence{250};
  std::chrono::milliseconds lease{1000};
  // How long a writer waits, after its publish, for an instance that does not acknowledge: the
  // instance's proof ran out by then (10 % for clocks that run at different rates, and a little).
  std::chrono::milliseconds fence_wait() const { return fence + fence / 10 + std::chrono::milliseconds(5); }
};

// A new instance id: random, with the host's name and the process id for whoever reads it.
std::string new_instance_id();

// This instance's L1, its invalidation log and its trust: what an event changes here.
struct Local {
  cache::L1& l1;
  cache::InvalidationLog& log;
  cache::Trust& trust;
  // Counts the events that name kPermissionsTag (the workers compare it with what they read).
  std::atomic<std::uint64_t>* permission_changes = nullptr;
  // Records the tags, then drops their L1 entries: a fill that began before cannot enter after.
  void drop(const std::vector<std::string>& tags) const;
};

// The acknowledgements writers wait for, shared by the workers: a writer registers its event
// before publishing it; the subscriber (worker 0) hands in what arrives.
class Acks {
 public:
  struct Wait;
  std::shared_ptr<Wait> expect(const std::string& event_id);
  // The instances that must acknowledge, known once the event is published.
  void members(const std::shared_ptr<Wait>& w, std::vector<std::string> ids);
  void ack(std::string_view event_id, std::string_view member);
  // On the writer's executor: until every member acknowledged or `deadline`; the members that
  // did not. The wait is forgotten afterwards.
  boost::asio::awaitable<std::vector<std::string>> wait(std::shared_ptr<Wait> w, std::chrono::steady_clock::time_point deadline);
  void forget(const std::shared_ptr<Wait>& w);
  std::size_t waiting() const;

 private:
  mutable std::mutex m_;
  std::unordered_map<std::string, std::shared_ptr<Wait>> waits_;
};

// Worker 0's side of the protocol: the lease and the pings, the subscription, acknowledgements to
// writers elsewhere.
class Membership {
 public:
  Membership(boost::asio::io_context& ioc, redis::Client& commands, redis::Client& subscriber, Names names, std::string instance,
             Timing timing, Local local, Acks& acks,
             // Trust came back after it lapsed (L1 emptied, Redis suspect): a relay pass is due.
             std::function<void()> on_regained = {});
  void start();
  // Gives up the lease (so that writers stop waiting for this instance) and stops.
  boost::asio::awaitable<void> leave();
  void stop();

  const std::string& instance() const { return instance_; }
  struct Stats {
    std::uint64_t pings = 0, proofs = 0, lapses = 0, events = 0, acks_sent = 0, acks_received = 0;
  };
  const Stats& stats() const { return stats_; }
  // Each event's lag (its commit time to its tags dropped here) is observed in `h`.
  void set_lag(metrics::Histogram* h) { lag_ = h; }

 private:
  boost::asio::awaitable<void> heartbeats();
  void on_message(std::string_view channel, std::string_view payload);
  void on_event(std::string_view payload);
  void on_ping(std::uint64_t seq);
  boost::asio::awaitable<void> acknowledge(std::string to, std::string event_id);

  boost::asio::io_context& ioc_;
  redis::Client& commands_;
  redis::Client& subscriber_;
  Names names_;
  std::string instance_;
  std::string inbox_;
  Timing timing_;
  metrics::Histogram* lag_ = nullptr;
  Local local_;
  Acks& acks_;
  std::function<void()> on_regained_;
  std::shared_ptr<bool> running_;
  boost::asio::steady_timer timer_;
  std::uint64_t seq_ = 0;
  std::map<std::uint64_t, std::chrono::steady_clock::time_point> sent_;  // pings in flight
  Stats stats_;
};

// What a write's response waits behind, on the writer's worker.
class Barrier {
 public:
  Barrier(Invalidator& invalidator, Acks& acks, Local local, std::string instance, Timing timing);

  struct Report {
    Delivery delivery;
    std::vector<std::string> unacknowledged;  // counted as fenced once fence_wait had passed
    std::chrono::steady_clock::duration waited{};
  };
  // After the commit: drops the tags here, deletes their Redis entries, drops them here again
  // (a lookup by another worker in between may have put an old entry back), publishes the event
  // and waits for the instances' acknowledgements or for their fence.
  boost::asio::awaitable<Report> settle(Event e);
  std::chrono::milliseconds fence_wait() const { return timing_.fence_wait(); }

 private:
  Invalidator& invalidator_;
  Acks& acks_;
  Local local_;
  std::string instance_;
  Timing timing_;
};

}  // namespace pitstop::invalidation
