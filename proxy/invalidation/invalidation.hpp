#pragma once
// Invalidation: what a write (through pitstop, or around it, caught by triggers) changed,
// carried as tags. An event deletes the tags' Redis entries, is published for every instance's
// L1 and appended to a capped stream for other listeners; the outbox relay retries events that
// could not be delivered, so an invalidation is late at worst, never lost.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

#include "proxy/cache/store.hpp"
#include "proxy/db/db.hpp"
#include "proxy/redis/client.hpp"

namespace pitstop::invalidation {

// The tag of a change to the ERP's permission tables (their triggers write it): every instance
// that hears it reads the permissions again before deciding anything with them.
inline constexpr std::string_view kPermissionsTag = "permissions";

// {"id":"outbox:42","tags":["customer:CUST-1",…],"source":"pitstop","time":"2026-11-29T03:55:00.123456Z","site":"…"}
// and, when set, "from":"<instance>" (acknowledge to that instance) and "cleared":false (the
// Redis entries of the tags could not be deleted: do not trust Redis until the relay has).
struct Event {
  std::string id;
  std::vector<std::string> tags;
  std::string source;  // pitstop (a write through pitstop) or trigger (a write around it)
  std::string time;    // when the write committed, UTC, ISO 8601
  std::string site;
  std::string from;    // the writing instance, waiting for acknowledgements; empty: nobody waits
  bool cleared = true;
};
std::string encode(const Event& e);
std::optional<Event> decode(std::string_view json);
// Now as the events write it ("2026-11-29T03:55:00.123456Z").
std::string utc_now();
// The time an event carries ("2026-11-29T03:55:00.123456Z", or with a space and no Z, as
// MariaDB writes it), nothing when it is not one.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text);

struct Names {
  std::string prefix;   // pitstop:<site>:
  std::string channel;  // pitstop:<site>:invalidations (PUBLISH)
  std::string stream;   // pitstop:<site>:invalidations:stream (XADD, capped)
  std::string members;  // pitstop:<site>:members (sorted set: instance -> end of its lease, Redis's clock)
  // pitstop:<site>:instance:<id>: an instance's own channel (its pings, acknowledgements to it)
  std::string inbox(std::string_view instance) const;
};
Names names(std::string_view site);

struct Settings {
  std::string site;
  std::size_t stream_max_len = 10000;
  std::string erp_db_name;  // with an ERP Redis: its document cache entries go too
};

// What delivering an event did.
struct Delivery {
  boost::system::error_code ec;  // something was not done: deliver it again (the outbox keeps it)
  bool cleared = false;          // the tags' Redis entries are gone
  bool published = false;        // the event reached the queue Redis
  std::chrono::steady_clock::time_point published_at{};  // when the publish was confirmed
  std::vector<std::string> members;  // the instances whose lease was live when it was published
};

// Delivers events with one worker's clients.
class Invalidator {
 public:
  Invalidator(cache::Remote& store, redis::Client& queue, redis::Client* erp, Settings settings);
  // Deletes the Redis entries, drops the ERP's cached documents, then publishes and appends the
  // event, marked `cleared` or not. `after_delete` runs between the two, told whether the entries
  // are gone.
  boost::asio::awaitable<Delivery> deliver(Event e, const std::function<void(bool cleared)>& after_delete = {});
  const Names& names() const { return names_; }
  const std::string& site() const { return settings_.site; }

 private:
  cache::Remote& store_;
  redis::Client& queue_;
  redis::Client* erp_;
  Settings settings_;
  Names names_;
};

// The outbox relay: delivers every outbox row after its site's cursor (pitstop_outbox_cursor)
// that this site has not delivered yet: triggers' rows, other sites' rows, and this site's rows
// whose writer could not deliver them (Redis down, the process gone). Instances of one site take
// turns on the cursor's row lock. Delivery is idempotent, so a row delivered twice does no harm.
class Relay {
 public:
  Relay(boost::asio::io_context& ioc, db::Pool& pool, Invalidator& invalidator, std::chrono::milliseconds interval,
        std::chrono::seconds retention, std::function<void(const Event&)> on_delivered,
        // After a pass that left nothing pending, with the time the pass started.
        std::function<void(std::chrono::steady_clock::time_point)> on_caught_up);
  void start();
  void stop();
  // A pass now rather than at the next interval (on the relay's thread). With `up_to`, an outbox
  // id known to be committed: passes follow closely until the relay has read that far (the
  // binary log announces a commit a moment before the row can be read).
  void wake(std::uint64_t up_to = 0);
  // One pass; returns how many rows it delivered (tests drive it directly).
  boost::asio::awaitable<std::size_t> pass();

  struct Stats {
    std::uint64_t delivered = 0;
    std::uint64_t failures = 0;
    std::uint64_t passes = 0;
  };
  const Stats& stats() const { return stats_; }
  // How long an outbox id that was skipped (its transaction had not committed) is looked for.
  void set_gap_grace(std::chrono::seconds grace) { gap_grace_ = grace; }

 private:
  static constexpr std::size_t kMaxHoles = 100000;
  static constexpr std::size_t kPage = 500;  // outbox rows read per pass
  using Row = std::vector<std::optional<std::string>>;
  struct Pass;  // one pass's transaction and what it delivered (invalidation.cpp)

  boost::asio::awaitable<void> run();
  std::chrono::milliseconds next_delay();
  // The steps of a pass, in order. A step that returns nullopt or false has ended the pass: its
  // transaction is rolled back (or, for a new site's cursor, committed).
  boost::asio::awaitable<std::optional<std::string>> outbox_top(Pass& p);
  boost::asio::awaitable<std::optional<std::uint64_t>> lock_cursor(Pass& p, const std::string& top,
                                                                   std::chrono::steady_clock::time_point started);
  boost::asio::awaitable<bool> deliver_late(Pass& p);
  boost::asio::awaitable<bool> deliver_page(Pass& p);
  boost::asio::awaitable<bool> deliver_row(Pass& p, const Row& row);
  void expire_holes(std::chrono::steady_clock::time_point now);
  boost::asio::awaitable<void> move_cursor(Pass& p);
  boost::asio::awaitable<void> purge();
  void complain(const db::Error& e);

  boost::asio::io_context& ioc_;
  db::Pool& pool_;
  Invalidator& invalidator_;
  std::chrono::milliseconds interval_;
  std::chrono::seconds retention_;
  std::function<void(const Event&)> on_delivered_;
  std::function<void(std::chrono::steady_clock::time_point)> on_caught_up_;
  std::shared_ptr<bool> running_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point last_purge_{};
  std::chrono::steady_clock::time_point last_complaint_{};
  Stats stats_;
  std::uint64_t scanned_ = 0;  // the highest outbox id read
  std::uint64_t wanted_ = 0;   // the highest id announced by wake()
  std::chrono::milliseconds retry_{1};
  bool behind_ = false;        // the last pass read a full page
  bool woken_ = false;         // wake() came during a pass: the next pass at once
  std::map<std::uint64_t, std::chrono::steady_clock::time_point> missing_;  // holes below it, since when
  std::chrono::seconds gap_grace_{60};
};

}  // namespace pitstop::invalidation
