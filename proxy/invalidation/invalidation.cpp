#include "proxy/invalidation/invalidation.hpp"

#include <simdjson.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <ctime>

#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::invalidation {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::steady_clock;

std::string utc_now() {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  auto us = duration_cast<microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(us));
  return buf;
}

std::string encode(const Event& e) {
  std::string out;
  json::Writer w(out);
  w.begin_object().member("id", e.id).key("tags").begin_array();
  for (const auto& t : e.tags) w.value(t);
  w.end_array().member("source", e.source).member("time", e.time).member("site", e.site).end_object();
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
  return e;
}

Names names(std::string_view site) {
  std::string base = "pitstop:" + std::string(site) + ":invalidations";
  return {base, base + ":stream"};
}

// ---------------------------------------------------------------------------------------------

void Log::record(const std::vector<std::string>& tags) {
  const auto now = steady_clock::now();
  std::lock_guard lock(m_);
  for (const auto& t : tags) last_[t] = now;
  // Nothing fills for longer than this: older records can go.
  if (now - pruned_ > std::chrono::minutes(1)) {
    std::erase_if(last_, [&](const auto& kv) { return now - kv.second > std::chrono::minutes(10); });
    pruned_ = now;
  }
}

bool Log::invalidated_since(const std::vector<std::string>& tags, steady_clock::time_point since) const {
  std::lock_guard lock(m_);
  for (const auto& t : tags)
    if (auto it = last_.find(t); it != last_.end() && it->second >= since) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------

Invalidator::Invalidator(cache::Store& store, redis::Client& queue, redis::Client* erp, Settings settings)
    : store_(store), queue_(queue), erp_(erp), settings_(std::move(settings)), names_(invalidation::names(settings_.site)) {}

asio::awaitable<error_code> Invalidator::deliver(const Event& e) {
  error_code failed;
  auto deleted = co_await store_.invalidate(e.tags);
  if (!deleted) failed = deleted.error();

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
      if (!r && !failed) failed = r.error();
    }
  }

  Event stamped = e;
  if (stamped.site.empty()) stamped.site = settings_.site;
  const std::string json = encode(stamped);
  const std::string maxlen = std::to_string(settings_.stream_max_len);
  std::vector<redis::Command> cmds;
  cmds.push_back({"PUBLISH", names_.channel, json});
  cmds.push_back({"XADD", names_.stream, "MAXLEN", "~", maxlen, "*", "event", json});
  auto r = co_await queue_.pipeline(cmds);
  if (!r) {
    if (!failed) failed = r.error();
  } else {
    for (const auto& reply : *r)
      if (reply.is_error() && !failed) failed = make_error_code(boost::system::errc::io_error);
  }
  co_return failed;
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
      on_caught_up_(std::move(on_caught_up)) {}

void Relay::start() {
  running_ = std::make_shared<bool>(true);
  asio::co_spawn(ioc_, run(), asio::detached);
}

void Relay::stop() {
  if (running_) *running_ = false;
}

asio::awaitable<void> Relay::run() {
  auto running = running_;
  asio::steady_timer timer(ioc_);
  // The first pass at once: it is what makes Redis trusted after a start.
  while (*running) {
    co_await pass();
    timer.expires_after(interval_);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

namespace {
std::string sql_time(std::chrono::system_clock::time_point tp) {
  using namespace std::chrono;
  std::time_t t = system_clock::to_time_t(tp);
  auto us = duration_cast<microseconds>(tp.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(us));
  return buf;
}
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
  auto complain = [&](const std::string& what) {
    if (std::chrono::steady_clock::now() - last_complaint_ > std::chrono::minutes(1)) {
      last_complaint_ = std::chrono::steady_clock::now();
      log::warn("outbox relay: ", what, " (are sql/outbox.sql and sql/triggers.sql applied?)");
    }
  };
  // A new site starts at the end of the outbox: it has cached nothing older.
  auto init = co_await c.execute(
      "INSERT IGNORE INTO `pitstop_outbox_cursor` (`site`, `last_id`, `updated`) "
      "SELECT ?, COALESCE(MAX(`id`), 0), NOW(6) FROM `pitstop_outbox`",
      site_param, timeout);
  if (!init) {
    complain(init.error().message);
    co_return 0;
  }
  auto begin = co_await c.query("START TRANSACTION", timeout);
  if (!begin) co_return 0;
  // Instances of one site take turns on its cursor.
  auto cursor = co_await c.execute("SELECT `last_id`, (SELECT COALESCE(MAX(`id`), 0) FROM `pitstop_outbox`) "
                                   "FROM `pitstop_outbox_cursor` WHERE `site` = ? FOR UPDATE",
                                   site_param, timeout);
  if (!cursor || cursor->rows.empty() || !cursor->rows[0][0]) {
    if (!cursor) complain(cursor.error().message);
    if (!c.broken()) co_await c.query("ROLLBACK", timeout);
    co_return 0;
  }
  const std::string from = *cursor->rows[0][0];
  const std::uint64_t target = cursor->rows[0][1] ? std::stoull(*cursor->rows[0][1]) : 0;
  const db::Param after[] = {std::string_view(from)};
  auto rows = co_await c.execute(
      "SELECT `id`, `tags`, `source`, `created`, `site`, `done` FROM `pitstop_outbox` WHERE `id` > ? ORDER BY `id` LIMIT 200", after,
      timeout);
  if (!rows) {
    complain(rows.error().message);
    if (!c.broken()) co_await c.query("ROLLBACK", timeout);
    co_return 0;
  }
  std::uint64_t last = std::stoull(from);
  std::string first_deliveries;
  std::size_t delivered = 0;
  bool failed = false;
  simdjson::dom::parser parser;
  for (const auto& row : rows->rows) {
    if (!row[0] || !row[1]) continue;
    const std::uint64_t id = std::stoull(*row[0]);
    const bool done = row[5] && *row[5] == "1";
    // This site's own writes were delivered by their writer; the others' and the triggers'
    // rows, and this site's undelivered ones (its writer died or Redis failed), are delivered.
    if (!(done && row[4] && *row[4] == site)) {
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
      auto ec = co_await invalidator_.deliver(e);
      if (ec) {
        ++stats_.failures;
        failed = true;
        break;
      }
      if (on_delivered_) on_delivered_(e);
      ++delivered;
      if (!done) first_deliveries += (first_deliveries.empty() ? "" : ",") + *row[0];
    }
    last = id;
  }
  const std::string last_text = std::to_string(last);
  const db::Param move[] = {std::string_view(last_text), std::string_view(site)};
  auto moved = co_await c.execute("UPDATE `pitstop_outbox_cursor` SET `last_id` = ?, `updated` = NOW(6) WHERE `site` = ?", move, timeout);
  if (!moved) failed = true;
  if (!first_deliveries.empty()) {
    // The ids are the table's own integers, not client data.
    auto u = co_await c.query("UPDATE `pitstop_outbox` SET `done` = 1, `done_at` = NOW(6) WHERE `done` = 0 AND `id` IN (" +
                                  first_deliveries + ")",
                              timeout);
    if (!u) failed = true;
  }
  auto commit = co_await c.query(failed && !moved ? "ROLLBACK" : "COMMIT", timeout);
  if (!commit) failed = true;
  stats_.delivered += delivered;
  // Caught up: everything that was in the outbox when this pass began is delivered.
  if (!failed && last >= target && on_caught_up_) on_caught_up_(started);
  if (failed) log::warn("outbox relay: delivery failed; ", delivered, " row(s) delivered, the rest retried in ", interval_.count(), " ms");

  // Delivered rows are kept a while for inspection, then purged in small batches.
  const auto now = std::chrono::steady_clock::now();
  if (now - last_purge_ > std::chrono::minutes(1)) {
    last_purge_ = now;
    const std::string cutoff = sql_time(std::chrono::system_clock::now() - retention_);
    const db::Param p[] = {std::string_view(cutoff)};
    co_await pool_.execute("DELETE FROM `pitstop_outbox` WHERE `created` < ? LIMIT 5000", p, false);
  }
  co_return delivered;
}

}  // namespace pitstop::invalidation
