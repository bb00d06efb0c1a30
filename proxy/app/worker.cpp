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
  if (!catalog_) {
    auto c = co_await origin::load_catalog(primary_, *shared_.rules);
    if (!c) co_return c.error();
    catalog_ = std::move(*c);
  }
  co_return catalog_;
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
