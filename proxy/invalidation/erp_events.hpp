#pragma once
// Frappe's own realtime events as invalidations: the ERP publishes `doc_update` (room
// doc:<DocType>/<name>) and `list_update` (room doctype:<DocType>) on its Redis `events` channel
// whenever a document changes (frappe/realtime.py publish_realtime, emit_via_redis). Each
// becomes an invalidation of the matching tags, delivered like any other (Redis entries deleted,
// every instance told). While the subscription is down, changes may go unheard: when it is back,
// this instance's L1 is emptied, as after pitstop's own channel comes back. The outbox triggers
// stay the safety net for the tags these events cannot name (a row's own columns).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "proxy/invalidation/invalidation.hpp"
#include "proxy/redis/client.hpp"

namespace pitstop::invalidation {

// The tags one message of the `events` channel invalidates: none for other events, malformed
// messages or rooms that name no document or doctype.
std::vector<std::string> erp_event_tags(std::string_view payload);

class ErpEvents {
 public:
  struct Stats {
    std::uint64_t messages = 0;
    std::uint64_t invalidations = 0;  // messages that named tags
    std::uint64_t ignored = 0;        // other events, malformed messages
    std::uint64_t resubscribed = 0;   // times L1 was emptied because the feed had been lost
  };
  // `subscriber` is a client for this alone; `flush_l1` empties this instance's L1.
  ErpEvents(boost::asio::io_context& ioc, redis::Client& subscriber, Invalidator& invalidator, std::string site,
            std::function<void()> flush_l1);
  void start();
  void stop();
  const Stats& stats() const { return stats_; }
  bool subscribed() const { return subscriber_.subscribed(); }

 private:
  void on_message(std::string_view payload);

  boost::asio::io_context& ioc_;
  redis::Client& subscriber_;
  Invalidator& invalidator_;
  std::string site_;
  std::function<void()> flush_l1_;
  bool was_subscribed_ = false;
  bool lost_ = false;
  std::shared_ptr<bool> running_;
  std::uint64_t next_id_ = 0;
  Stats stats_;
};

}  // namespace pitstop::invalidation
