#pragma once
// What the workers share: the rules and their origins (immutable after start-up), the L1 cache,
// the single-flight table, the invalidation log and the trust state (all internally
// synchronised). Nothing else crosses threads.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <memory>
#include <string>

#include "proxy/auth/auth.hpp"
#include "proxy/cache/cache.hpp"
#include "proxy/cache/coherence.hpp"
#include "proxy/invalidation/binlog.hpp"
#include "proxy/invalidation/invalidation.hpp"
#include "proxy/invalidation/membership.hpp"
#include "proxy/limits/limits.hpp"
#include "proxy/log/access.hpp"
#include "proxy/config/config.hpp"
#include "proxy/origin/origin.hpp"
#include "proxy/rules/rules.hpp"

namespace pitstop::app {

// What a reload replaces, as one value: the config as running (the settings that need a restart
// kept as they were at start-up) and the rules loaded with it. A request holds the one it began
// with until it ends; workers pick up a new one between requests.
struct Live {
  std::shared_ptr<const config::Config> cfg;
  std::shared_ptr<const rules::RuleSet> rules;
  std::string digest;  // SHA-256 of the config and rules files, 16 hex digits
  std::chrono::system_clock::time_point loaded_at = std::chrono::system_clock::now();
};

// Loads the rules for `cfg` and digests both files; throws config::ConfigError.
std::shared_ptr<const Live> load_live(std::shared_ptr<const config::Config> cfg);

struct Shared {
  explicit Shared(const config::Config& cfg);

  // The start-up config: what needs a restart (listeners, servers, timeouts) is read here.
  const config::Config& cfg;
  std::shared_ptr<const Live> live() const {
    std::lock_guard lock(live_m_);
    return live_;
  }
  void install(std::shared_ptr<const Live> next) {
    {
      std::lock_guard lock(live_m_);
      live_ = std::move(next);
    }
    live_version.fetch_add(1, std::memory_order_release);
  }
  // Moves with every install: a worker compares it (one atomic load) before taking the lock.
  std::atomic<std::uint64_t> live_version{1};
  // Reloads so far, and why the last one failed (the main thread's: SIGHUP and the admin listener).
  std::atomic<std::uint64_t> reloads_ok{0}, reloads_failed{0};
  std::string last_reload_error;
  cache::L1 l1;
  cache::Flights flights;
  cache::InvalidationLog invalidations;
  cache::Trust trust;
  // Events naming the permission tables heard so far (worker 0's subscriber counts them).
  std::atomic<std::uint64_t> permission_changes{0};
  // This process among the site's instances, and the acknowledgements its writes wait for.
  std::string instance = invalidation::new_instance_id();
  invalidation::Acks acks;
  // Worker 0's binary log watch, for /readyz (set before the workers start; its state is atomic).
  const invalidation::BinlogWatch* binlog = nullptr;
  // The access log (off when log.access is empty); workers write to their own buffer in it.
  std::unique_ptr<log::AccessLog> access_log;
  const std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  limits::LocalLimiter local_limiter;
  limits::TrustedProxies trusted_proxies;
  auth::FailureBudget failure_budget{local_limiter, limits::Policy{"auth_failures", cfg.auth.failure_limit, cfg.auth.failure_window.count(),
                                                                   cfg.auth.failure_limit}};

 private:
  mutable std::mutex live_m_;
  std::shared_ptr<const Live> live_;
};

}  // namespace pitstop::app
