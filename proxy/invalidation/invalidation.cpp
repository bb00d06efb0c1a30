#include "proxy/invalidation/invalidation.hpp"

#include <simdjson.h>

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::invalidation {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::steady_clock;

std::string utc_now() { return log::utc_text(std::chrono::system_clock::now(), 'T', 6, true); }

std::string encode(const Event& e) {
  std::string out;
  json::Writer w(out);
  w.begin_object().member("id", e.id).key("tags").begin_array();
  for (const auto& t : e.tags) w.value(t);
  w.end_array().member("source", e.source).member("time", e.time).member("site", e.site);
  if (!e.from.empty()) w.member("from", e.from);
  if (!e.cleared) w.member("cleared", false);
  w.end_object();
  return out;
}

std::optional<Event> decode(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::padded_string padded(json.data(), json.size());
  if (parser.parse(padded).get(doc)) return std::nullopt;
  Event e;
  std::string_view s;
  if (doc["id"].get(s)) return std::nullopt;
  e.id = std::string(s);
  simdjson::dom::array tags;
  if (doc["tags"].get(tags)) return std::nullopt;
  for (auto t : tags) {
    if (t.get(s)) return std::nullopt;
    e.tags.emplace_back(s);
  }
  if (!doc["source"].get(s)) e.source = std::string(s);
  if (!doc["time"].get(s)) e.time = std::string(s);
  if (!doc["site"].get(s)) e.site = std::string(s);
  if (!doc["from"].get(s)) e.from = std::string(s);
  bool cleared = true;
  if (!doc["cleared"].get(cleared)) e.cleared = cleared;
  return e;
}

Names names(std::string_view site) {
  const std::string prefix = "pitstop:" + std::string(site) + ":";
  return {prefix, prefix + "invalidations", prefix + "invalidations:stream", prefix + "members"};
}

std::string Names::inbox(std::string_view instance) const { return prefix + "instance:" + std::string(instance); }

namespace {
// Publishes and streams the event and says who must acknowledge it: the members whose lease is
// live now, read in the same atomic step, so that an instance that joins later cannot have
// missed the event unnoticed (it subscribes before it joins).
// KEYS: channel, stream, members. ARGV: event, stream max length.
const redis::Script kPublish(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PUBLISH', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf')
)lua");
}  // namespace

// ---------------------------------------------------------------------------------------------

Invalidator::Invalidator(cache::Remote& store, redis::Client& queue, redis::Client* erp, Settings settings)
    : store_(store), queue_(queue), erp_(erp), settings_(std::move(settings)), names_(invalidation::names(settings_.site)) {}

asio::awaitable<Delivery> Invalidator::deliver(Event e, const std::function<void(bool)>& after_delete) {
  Delivery out;
  auto deleted = co_await store_.invalidate(e.tags);
  if (!deleted) out.ec = deleted.error();
  out.cleared = static_cast<bool>(deleted);
  if (after_delete) after_delete(out.cleared);

  if (erp_ && !settings_.erp_db_name.empty()) {
    // Frappe keeps documents in its Redis as <db_name>|document_cache::<DocType>::<name>.
    std::vector<std::string> keys;
    for (const auto& t : e.tags) {
      if (t.rfind("doc:", 0) != 0) continue;
      auto slash = t.find('/');
      if (slash == std::string::npos) continue;
      keys.push_back(settings_.erp_db_name + "|document_cache::" + t.substr(4, slash - 4) + "::" + t.substr(slash + 1));
    }
    if (!keys.empty()) {
      std::vector<std::string_view> argv{"DEL"};
      argv.insert(argv.end(), keys.begin(), keys.end());
      auto r = co_await erp_->command(argv);
      if (!r && !out.ec) out.ec = r.error();
    }
  }

  if (e.site.empty()) e.site = settings_.site;
  e.cleared = out.cleared;
  const std::string json = encode(e);
  const std::string maxlen = std::to_string(settings_.stream_max_len);
  const std::string_view keys[] = {names_.channel, names_.stream, names_.members};
  const std::string_view args[] = {json, maxlen};
  auto r = co_await queue_.eval(kPublish, keys, args);
  if (!r || r->is_error()) {
    if (!out.ec) out.ec = r ? make_error_code(boost::system::errc::io_error) : r.error();
    co_return out;
  }
  out.published = true;
  out.published_at = steady_clock::now();
  for (const auto& m : r->elements)
    if (m.is_string()) out.members.push_back(m.str);
  co_return out;
}

// ---------------------------------------------------------------------------------------------

Relay::Relay(asio::io_context& ioc, db::Pool& pool, Invalidator& invalidator, std::chrono::milliseconds interval,
             std::chrono::seconds retention, std::function<void(const Event&)> on_delivered,
             std::function<void(std::chrono::steady_clock::time_point)> on_caught_up)
    : ioc_(ioc),
      pool_(pool),
      invalidator_(invalidator),
      interval_(interval),
      retention_(retention),
      on_delivered_(std::move(on_delivered)),
      on_caught_up_(std::move(on_caught_up)),
      timer_(ioc) {}

void Relay::start() {
  running_ = std::make_shared<bool>(true);
  asio::co_spawn(ioc_, run(), asio::detached);
}

void Relay::stop() {
  if (running_) *running_ = false;
  timer_.cancel();
}

void Relay::wake(std::uint64_t up_to) {
  wanted_ = std::max(wanted_, up_to);
  timer_.cancel();
}

asio::awaitable<void> Relay::run() {
  auto running = running_;
  // The first pass at once: it is what makes Redis trusted after a start.
  while (*running) {
    behind_ = false;
    co_await pass();
    if (!*running) break;
    // A full page means more is waiting (an instance that was down, a burst of changes around
    // pitstop): the next pass at once, after whatever else is queued on this thread. A row
    // announced but not read yet: soon again, backing off to the interval.
    auto next = interval_;
    if (behind_) {
      next = std::chrono::milliseconds(0);
    } else if (wanted_ > scanned_) {
      next = std::min(retry_, interval_);
      retry_ *= 2;
    } else {
      retry_ = std::chrono::milliseconds(1);
    }
    timer_.expires_after(next);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

namespace {
std::string sql_time(std::chrono::system_clock::time_point tp) { return log::utc_text(tp, ' ', 6, false); }
}  // namespace

asio::awaitable<std::size_t> Relay::pass() {
  ++stats_.passes;
  const auto started = std::chrono::steady_clock::now();
  const auto timeout = pool_.query_timeout();
  const std::string& site = invalidator_.site();
  const db::Param site_param[] = {std::string_view(site)};

  auto lease = co_await pool_.acquire();
  if (!lease) co_return 0;
  auto& c = **lease;
  auto complain = [&](const db::Error& e) {
    if (std::chrono::steady_clock::now() - last_complaint_ > std::chrono::minutes(1)) {
      last_complaint_ = std::chrono::steady_clock::now();
      // 1146: no such table.
      log::warn("outbox relay: ", e.message, e.server_code == 1146 ? " (are sql/outbox.sql and sql/triggers.sql applied?)" : "");
    }
  };
  // Read committed, and no locking read of the outbox anywhere: a locking read (or an INSERT …
  // SELECT from it) waits for the newest row's uncommitted transaction and, under repeatable
  // read, holds a gap lock that stalls every writer's outbox insert until that transaction ends.
  auto isolation = co_await c.query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", timeout);
  if (!isolation) co_return 0;
  auto begin = co_await c.query("START TRANSACTION", timeout);
  if (!begin) co_return 0;
  auto rollback = [&]() -> asio::awaitable<void> {
    if (!c.broken()) co_await c.query("ROLLBACK", timeout);
  };
  auto top = co_await c.query("SELECT COALESCE(MAX(`id`), 0) FROM `pitstop_outbox`", timeout);
  if (!top || top->rows.empty() || !top->rows[0][0]) {
    if (!top) complain(top.error());
    co_await rollback();
    co_return 0;
  }
  const std::string target_text = *top->rows[0][0];
  const std::uint64_t target = std::stoull(target_text);
  // Instances of one site take turns on its cursor.
  auto cursor = co_await c.execute("SELECT `last_id` FROM `pitstop_outbox_cursor` WHERE `site` = ? FOR UPDATE", site_param, timeout);
  if (!cursor) {
    complain(cursor.error());
    co_await rollback();
    co_return 0;
  }
  if (cursor->rows.empty() || !cursor->rows[0][0]) {
    // A new site starts at the end of the outbox: it has cached nothing older.
    const db::Param init_params[] = {std::string_view(site), std::string_view(target_text)};
    auto init = co_await c.execute("INSERT IGNORE INTO `pitstop_outbox_cursor` (`site`, `last_id`, `updated`) VALUES (?, ?, NOW(6))",
                                   init_params, timeout);
    if (!init) complain(init.error());
    auto done = co_await c.query(init ? "COMMIT" : "ROLLBACK", timeout);
    if (init && done && on_caught_up_) on_caught_up_(started);
    co_return 0;
  }
  const std::uint64_t cursor_id = std::stoull(*cursor->rows[0][0]);
  // Ids at or below the cursor are settled, by this instance or another of the site.
  if (scanned_ < cursor_id) scanned_ = cursor_id;
  missing_.erase(missing_.begin(), missing_.upper_bound(cursor_id));

  std::string first_deliveries;
  std::size_t delivered = 0;
  bool failed = false;
  simdjson::dom::parser parser;
  auto deliver_row = [&](const std::vector<std::optional<std::string>>& row) -> asio::awaitable<bool> {
    const bool done = row[5] && *row[5] == "1";
    // This site's own writes were delivered by their writer; the others' and the triggers'
    // rows, and this site's undelivered ones (its writer died or Redis failed), are delivered.
    if (done && row[4] && *row[4] == site) co_return true;
    Event e;
    e.id = "outbox:" + *row[0];
    e.source = row[2] ? *row[2] : "";
    e.time = row[3] ? *row[3] : "";
    if (e.time.size() >= 19) {
      e.time[10] = 'T';
      e.time += 'Z';
    }
    simdjson::padded_string padded(*row[1]);
    simdjson::dom::array tags;
    if (!parser.parse(padded).get(tags)) {
      for (auto t : tags) {
        std::string_view s;
        if (!t.get(s)) e.tags.emplace_back(s);  // NULL columns give null tags: nothing to drop
      }
    }
    if (auto d = co_await invalidator_.deliver(e); d.ec) {
      ++stats_.failures;
      co_return false;
    }
    if (on_delivered_) on_delivered_(e);
    ++delivered;
    // `done` means "delivered to its writer's site": another site's row stays as it is, or its
    // own relay would take it for delivered (to this site's Redis, not to its own).
    const bool mine_or_trigger = !row[4] || *row[4] == site;
    if (!done && mine_or_trigger) first_deliveries += (first_deliveries.empty() ? "" : ",") + *row[0];
    co_return true;
  };
  static constexpr const char* kColumns = "SELECT `id`, `tags`, `source`, `created`, `site`, `done` FROM `pitstop_outbox` ";

  // Ids are taken when a transaction inserts, visible when it commits: a row can appear behind
  // rows already read. The holes seen so far are looked for again on every pass.
  if (!missing_.empty()) {
    std::string ids;
    std::size_t n = 0;
    for (auto it = missing_.begin(); it != missing_.end() && n < 1000; ++it, ++n) ids += (ids.empty() ? "" : ",") + std::to_string(it->first);
    // The ids are integers of this process, not client data.
    auto late = co_await c.query(kColumns + std::string("WHERE `id` IN (") + ids + ") ORDER BY `id`", timeout);
    if (!late) {
      complain(late.error());
      co_await rollback();
      co_return 0;
    }
    for (const auto& row : late->rows) {
      if (!row[0] || !row[1]) continue;
      if (!co_await deliver_row(row)) {
        failed = true;
        break;
      }
      missing_.erase(std::stoull(*row[0]));
    }
  }
  const std::string after_text = std::to_string(scanned_);
  const db::Param after[] = {std::string_view(after_text)};
  auto rows = co_await c.execute(kColumns + std::string("WHERE `id` > ? ORDER BY `id` LIMIT ") + std::to_string(kPage), after, timeout);
  if (!rows) {
    complain(rows.error());
    co_await rollback();
    co_return 0;
  }
  behind_ = rows->rows.size() >= kPage;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& row : rows->rows) {
    if (failed) break;
    if (!row[0] || !row[1]) continue;
    const std::uint64_t id = std::stoull(*row[0]);
    if (!co_await deliver_row(row)) {
      failed = true;
      break;
    }
    // The ids skipped on the way are transactions not committed yet, or rolled back.
    for (std::uint64_t hole = scanned_ + 1; hole < id; ++hole) {
      if (missing_.size() >= kMaxHoles) {
        log::warn("outbox relay: more than ", kMaxHoles, " outbox ids not committed yet; ids up to ", id - 1,
                  " are taken as rolled back");
        break;
      }
      missing_.emplace(hole, now);
    }
    scanned_ = id;
  }
  // A hole older than the grace is a rolled-back transaction (or one so long that its writes
  // are older than the caches' answers would be anyway).
  std::size_t expired = 0;
  for (auto it = missing_.begin(); it != missing_.end();) {
    if (now - it->second > gap_grace_) {
      it = missing_.erase(it);
      ++expired;
    } else {
      ++it;
    }
  }
  if (expired) log::debug("outbox relay: ", expired, " outbox id(s) never committed within ", gap_grace_.count(), " s: rolled back");
  const std::uint64_t last = missing_.empty() ? scanned_ : missing_.begin()->first - 1;
  const std::string last_text = std::to_string(last);
  const db::Param move[] = {std::string_view(last_text), std::string_view(site)};
  auto moved = co_await c.execute("UPDATE `pitstop_outbox_cursor` SET `last_id` = ?, `updated` = NOW(6) WHERE `site` = ?", move, timeout);
  if (!moved) failed = true;
  if (!first_deliveries.empty()) {
    // The ids are the table's own integers, not client data.
    // By primary key only, the order in which a writer's own UPDATE takes its locks; done_at
    // is assigned before done, so it sees the old value.
    auto u = co_await c.query("UPDATE `pitstop_outbox` SET `done_at` = IF(`done` = 1, `done_at`, NOW(6)), `done` = 1 WHERE `id` IN (" +
                                  first_deliveries + ")",
                              timeout);
    if (!u) failed = true;
  }
  auto commit = co_await c.query(failed && !moved ? "ROLLBACK" : "COMMIT", timeout);
  if (!commit) failed = true;
  stats_.delivered += delivered;
  // Caught up: everything that was in the outbox when this pass began is delivered.
  if (!failed && scanned_ >= target && on_caught_up_) on_caught_up_(started);
  if (failed) log::warn("outbox relay: delivery failed; ", delivered, " row(s) delivered, the rest retried in ", interval_.count(), " ms");

  // Delivered rows are kept a while for inspection, then purged in small batches.
  if (const auto t = std::chrono::steady_clock::now(); t - last_purge_ > std::chrono::minutes(1)) {
    last_purge_ = t;
    const std::string cutoff = sql_time(std::chrono::system_clock::now() - retention_);
    const db::Param p[] = {std::string_view(cutoff)};
    co_await pool_.execute("DELETE FROM `pitstop_outbox` WHERE `created` < ? LIMIT 5000", p, false);
  }
  co_return delivered;
}

}  // namespace pitstop::invalidation
