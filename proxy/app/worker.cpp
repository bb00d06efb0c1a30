#include "proxy/app/worker.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::app {

namespace asio = boost::asio;

namespace {

http::Settings http_settings(const config::Config& c) {
  http::Settings s;
  s.max_header_bytes = c.limits.max_header_bytes;
  s.max_url_bytes = c.limits.max_url_bytes;
  s.max_body_bytes = c.limits.max_body_bytes;
  // SO_REUSEPORT spreads connections evenly enough for an even share per worker.
  const auto workers = static_cast<std::size_t>(c.effective_workers());
  s.max_connections = std::max<std::size_t>(1, (c.limits.max_connections + workers - 1) / workers);
  s.max_requests_per_connection = c.limits.max_requests_per_connection;
  s.header_read = c.timeouts.header_read;
  s.body_read = c.timeouts.body_read;
  s.idle_keepalive = c.timeouts.idle_keepalive;
  s.write = c.timeouts.write;
  return s;
}

}  // namespace

namespace {
invalidation::Local local(Shared& s) { return {s.l1, s.invalidations, s.trust, &s.permission_changes}; }

invalidation::Timing timing(const config::Config& c) {
  return {c.invalidation.heartbeat, c.invalidation.fence, c.invalidation.lease};
}

auth::Settings auth_settings(const config::Config& c) {
  auth::Settings s;
  s.encryption_key = c.auth.encryption_key;
  s.session_expiry = c.auth.session_expiry;
  s.identity_ttl = c.auth.identity_ttl;
  s.failure_ttl = c.auth.failure_ttl;
  s.from_upstream = c.auth.source == "upstream";
  return s;
}
}  // namespace

Worker::Worker(Shared& shared, int index)
    : shared_(shared),
      index_(index),
      cache_(ioc_, shared.cfg.redis_cache, "cache"),
      queue_(ioc_, shared.cfg.redis_queue, "queue"),
      primary_(ioc_, shared.cfg.mariadb.primary, static_cast<std::size_t>(shared.cfg.mariadb.pool_size),
               shared.cfg.mariadb.connect_timeout, shared.cfg.mariadb.query_timeout, shared.cfg.mariadb.acquire_timeout),
      verifier_(primary_, auth_settings(shared.cfg), &shared.failure_budget),
      store_(cache_, shared.cfg.site),
      read_through_(ioc_.get_executor(), shared.l1, store_, shared.flights, shared.invalidations, shared.trust, cache::system_clock(),
                    cache::ReadSettings{.enabled = shared.cfg.cache.enabled, .follower_wait = shared.cfg.timeouts.origin}),
      erp_(shared.cfg.erp.redis_cache_url.empty() ? nullptr
                                                  : std::make_unique<redis::Client>(ioc_, shared.cfg.erp.redis_cache, "erp")),
      invalidator_(store_, queue_, erp_.get(),
                   invalidation::Settings{shared.cfg.site, shared.cfg.invalidation.stream_max_len, shared.cfg.erp.db_name}),
      barrier_(invalidator_, shared.acks, local(shared), shared.instance, timing(shared.cfg)),
      limiter_(queue_, shared.local_limiter,
               limits::Settings{shared.cfg.site, shared.cfg.limiting.fail_closed, shared.cfg.limiting.local_shortcut}),
      router_(*this),
      upstream_(shared.cfg.upstream.enabled() ? std::make_unique<upstream::Pool>(ioc_, shared.cfg.upstream) : nullptr),
      listener_(ioc_, http_settings(shared.cfg), router_, upstream_.get()) {
  verifier_.set_upstream(upstream_.get());
  live();
  cache_.set_latency(&metrics_.redis_cache);
  queue_.set_latency(&metrics_.redis_queue);
  primary_.set_latency(&metrics_.mariadb);
  if (index_ == 0) {
    events_ = std::make_unique<redis::Client>(ioc_, shared.cfg.redis_queue, "events");
    membership_ = std::make_unique<invalidation::Membership>(ioc_, queue_, *events_, invalidator_.names(), shared.instance,
                                                             timing(shared.cfg), local(shared),
                                                             shared.acks, [this] {
                                                               // Redis is suspect until a relay pass has caught up.
                                                               if (relay_) relay_->wake();
                                                             });
    relay_ = std::make_unique<invalidation::Relay>(
        ioc_, primary_, invalidator_, shared.cfg.invalidation.relay_interval, shared.cfg.invalidation.outbox_retention,
        [this](const invalidation::Event& e) { invalidate_locally(e.tags); },
        // Redis is trusted again once a relay pass that began after the failure left nothing
        // undelivered.
        [this](std::chrono::steady_clock::time_point started) { shared_.trust.relay_caught_up(started); });
    relay_->set_gap_grace(shared.cfg.invalidation.gap_grace);
    membership_->set_lag(&metrics_.invalidation_lag);
    binlog_ = std::make_unique<invalidation::BinlogWatch>(
        invalidation::BinlogSettings{shared.cfg.mariadb.primary, shared.cfg.site, shared.cfg.invalidation.binlog},
        // On the watch's thread: the relay is this worker's.
        [this](std::uint64_t up_to) { asio::post(ioc_, [this, up_to] { relay_->wake(up_to); }); });
    shared.binlog = binlog_.get();
    if (!shared.cfg.erp.events_redis_url.empty()) {
      erp_events_client_ = std::make_unique<redis::Client>(ioc_, shared.cfg.erp.events_redis, "erp-events");
      erp_events_ = std::make_unique<invalidation::ErpEvents>(ioc_, *erp_events_client_, invalidator_, shared.cfg.site,
                                                              [this] { shared_.l1.clear(); });
    }
  }
}

void Worker::invalidate_locally(const std::vector<std::string>& tags) { local(shared_).drop(tags); }

asio::awaitable<boost::system::result<std::shared_ptr<const origin::Catalog>, http::Problem>> Worker::catalog() {
  // Read again for new rules (a reload may name other doctypes); until then, the one read last.
  const auto rules = live_->rules;
  if (!catalog_ || catalog_rules_ != rules) {
    auto c = co_await origin::load_catalog(primary_, *rules);
    if (!c) co_return c.error();
    catalog_ = std::move(*c);
    catalog_rules_ = rules;
  }
  co_return catalog_;
}

const std::shared_ptr<const Live>& Worker::live() {
  const auto v = shared_.live_version.load(std::memory_order_acquire);
  if (v != live_version_) {
    live_ = shared_.live();
    live_version_ = v;
  }
  return live_;
}

bool Worker::permissions_current() const {
  if (!perms_.snapshot) return false;
  if (perms_.changes != shared_.permission_changes.load(std::memory_order_acquire)) return false;
  if (perms_.generation != shared_.trust.generation()) return false;
  // Without proof that this instance hears events, a change could go unheard: read them again
  // once the fence is over since the last read, as L1 is given up after it.
  const auto now = std::chrono::steady_clock::now();
  return shared_.trust.l1_usable(now) || now - perms_.at < shared_.cfg.invalidation.fence;
}

asio::awaitable<boost::system::result<std::shared_ptr<const perm::Snapshot>, http::Problem>> Worker::permissions() {
  if (shared_.cfg.auth.permissions == "rules") {
    // Nothing covered: the rules file decides every doctype.
    static const std::shared_ptr<const perm::Snapshot> none = perm::Snapshot::Builder().build();
    co_return none;
  }
  // One read at a time per worker; the others wait for it. A read counts from when it began:
  // an event that arrives during it makes the next request read again.
  for (int round = 0; round < 3; ++round) {
    if (permissions_current()) co_return perms_.snapshot;
    if (auto running = perms_.loading) {
      // The read under way ends after this request arrived: what it read is current enough for
      // it, even if the next request must read again (a slow read under a lapsed proof).
      const auto reads = perms_.reads;
      co_await running->async_wait(asio::as_tuple(asio::use_awaitable));
      if (perms_.reads != reads && perms_.snapshot) co_return perms_.snapshot;
      continue;
    }
    auto done = std::make_shared<asio::steady_timer>(ioc_, std::chrono::hours(1));
    perms_.loading = done;
    const auto changes = shared_.permission_changes.load(std::memory_order_acquire);
    const auto generation = shared_.trust.generation();
    auto loaded = co_await perm::load(primary_);
    perms_.loading.reset();
    done->cancel();
    if (!loaded) co_return loaded.error();
    perms_.snapshot = std::move(*loaded);
    perms_.changes = changes;
    perms_.generation = generation;
    perms_.at = std::chrono::steady_clock::now();
    ++perms_.reads;
    co_return perms_.snapshot;
  }
  co_return http::Problem{503, "ServiceUnavailable", "The ERP's permissions could not be read", true};
}

origin::ListLimits Worker::list_limits() const {
  origin::ListLimits limits;
  limits.max_rows = shared_.cfg.limits.max_list_rows;
  return limits;
}

asio::awaitable<metrics::Sample> Worker::sample() {
  using metrics::Type;
  metrics::Sample s;
  metrics_.into(s);
  const std::string w = std::to_string(index_);
  const auto& ls = listener_.stats();
  s.add("pitstop_open_connections", Type::gauge, "Client connections open now", {}, static_cast<double>(listener_.connections()));
  s.add("pitstop_connections_accepted_total", Type::counter, "Client connections accepted", {}, static_cast<double>(ls.accepted));
  s.add("pitstop_connections_refused_total", Type::counter, "Client connections refused over limits.max_connections", {},
        static_cast<double>(ls.refused));
  s.add("pitstop_request_errors_total", Type::counter, "Requests refused before a handler: timeouts and malformed requests",
        {{"reason", "timeout"}}, static_cast<double>(ls.timeouts));
  s.add("pitstop_request_errors_total", Type::counter, "Requests refused before a handler: timeouts and malformed requests",
        {{"reason", "protocol"}}, static_cast<double>(ls.protocol_errors));
  s.add("pitstop_worker_requests_total", Type::counter, "Requests handled, by worker (its share of the load)", {{"worker", w}},
        static_cast<double>(ls.requests));
  const auto& vs = verifier_.stats();
  static constexpr std::string_view kIdentity = "Identity checks: verified identities found in the per-worker cache, looked up, or refused for too many failures";
  s.add("pitstop_identity_total", Type::counter, kIdentity, {{"result", "hit"}}, static_cast<double>(vs.cache_hits));
  s.add("pitstop_identity_total", Type::counter, kIdentity, {{"result", "miss"}}, static_cast<double>(vs.lookups));
  s.add("pitstop_identity_total", Type::counter, kIdentity, {{"result", "refused"}}, static_cast<double>(vs.budget_refusals));
  static constexpr std::string_view kReconnects = "Connections made to Redis and MariaDB after the first (reconnects)";
  auto reconnects = [](std::uint64_t connects) { return static_cast<double>(connects > 0 ? connects - 1 : 0); };
  s.add("pitstop_reconnects_total", Type::counter, kReconnects, {{"server", "redis_cache"}}, reconnects(cache_.stats().connects));
  s.add("pitstop_reconnects_total", Type::counter, kReconnects, {{"server", "redis_queue"}}, reconnects(queue_.stats().connects));
  // A pool opens connections as load asks for them: only those that replaced a discarded one count.
  s.add("pitstop_reconnects_total", Type::counter, kReconnects, {{"server", "mariadb"}},
        static_cast<double>(std::min(primary_.stats().connects, primary_.stats().discarded)));
  s.add("pitstop_redis_timeouts_total", Type::counter, "Redis commands that timed out", {{"redis", "cache"}},
        static_cast<double>(cache_.stats().timeouts));
  s.add("pitstop_redis_timeouts_total", Type::counter, "Redis commands that timed out", {{"redis", "queue"}},
        static_cast<double>(queue_.stats().timeouts));
  s.add("pitstop_mariadb_connections", Type::gauge, "MariaDB connections open, by state", {{"state", "open"}},
        static_cast<double>(primary_.open_connections()));
  s.add("pitstop_mariadb_connections", Type::gauge, "MariaDB connections open, by state", {{"state", "idle"}},
        static_cast<double>(primary_.idle_connections()));
  if (upstream_) {
    const auto us = upstream_->stats();
    s.add("pitstop_upstream_connections", Type::gauge, "Connections to the ERP: in use by a relay, or idle in the pool",
          {{"state", "in_use"}}, static_cast<double>(us.in_flight));
    s.add("pitstop_upstream_connections", Type::gauge, "Connections to the ERP: in use by a relay, or idle in the pool",
          {{"state", "idle"}}, static_cast<double>(us.idle));
    s.add("pitstop_upstream_saturated_total", Type::counter, "Relayed requests refused with 503: upstream.max_concurrent in flight",
          {}, static_cast<double>(us.saturated));
    s.add("pitstop_upstream_connect_failures_total", Type::counter, "Connections to the ERP that failed", {},
          static_cast<double>(us.connect_failures));
  }
  if (index_ == 0) co_await sample_outbox(s);
  co_return s;
}

// How many outbox rows wait for the relay (worker 0's pool; the relay's own view lags by a pass).
asio::awaitable<void> Worker::sample_outbox(metrics::Sample& s) {
  using metrics::Type;
  static constexpr std::string_view kUp = "Whether worker 0 reaches the server now (1) or not (0)";
  s.add("pitstop_up", Type::gauge, kUp, {{"server", "redis_cache"}}, cache_.connected() ? 1 : 0);
  s.add("pitstop_up", Type::gauge, kUp, {{"server", "redis_queue"}}, queue_.connected() ? 1 : 0);
  const auto& ms = membership_->stats();
  s.add("pitstop_invalidation_events_total", Type::counter, "Invalidation events heard by this instance", {},
        static_cast<double>(ms.events));
  s.add("pitstop_invalidation_lapses_total", Type::counter, "Times this instance lost its proof of hearing events (L1 emptied)", {},
        static_cast<double>(ms.lapses));
  s.add("pitstop_outbox_delivered_total", Type::counter, "Outbox rows delivered by this instance's relay", {},
        static_cast<double>(relay_->stats().delivered));
  auto backlog = co_await primary_.execute("SELECT COUNT(*) FROM `pitstop_outbox` WHERE `done` = 0", {}, true);
  s.add("pitstop_up", Type::gauge, kUp, {{"server", "mariadb"}}, backlog ? 1 : 0);
  if (backlog && !backlog->rows.empty() && !backlog->rows[0].empty() && backlog->rows[0][0])
    s.add("pitstop_outbox_backlog", Type::gauge, "Outbox rows not yet delivered (every site)", {},
          std::strtod(backlog->rows[0][0]->c_str(), nullptr));
}

Worker::~Worker() { join(); }

void Worker::start() {
  thread_ = std::thread([this] {
    cache_.start();
    queue_.start();
    if (erp_) erp_->start();
    if (membership_) membership_->start();
    if (relay_) relay_->start();
    if (binlog_) binlog_->start();
    if (erp_events_client_) erp_events_client_->start();
    if (erp_events_) erp_events_->start();
    listener_.start();
    ioc_.run();
  });
}

void Worker::drain(std::function<void()> done) {
  asio::post(ioc_, [this, done = std::move(done)]() mutable {
    draining_ = true;
    // Writers elsewhere stop waiting for this instance at once rather than when its lease ends.
    if (membership_) asio::co_spawn(ioc_, membership_->leave(), asio::detached);
    listener_.drain(std::move(done));
  });
}

void Worker::shutdown() {
  asio::post(ioc_, [this] {
    listener_.abort_all();
    if (upstream_) upstream_->close_idle();
    if (binlog_) binlog_->stop();
    if (relay_) relay_->stop();
    if (membership_) membership_->stop();
    if (events_) events_->stop();
    if (erp_events_) erp_events_->stop();
    if (erp_events_client_) erp_events_client_->stop();
    if (erp_) erp_->stop();
    cache_.stop();
    queue_.stop();
    primary_.close();
    ioc_.stop();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

}  // namespace pitstop::app
