#pragma once
// What the workers share: the rules and their origins (immutable after start-up), the L1 cache,
// the single-flight table, the invalidation log and the trust state (all internally
// synchronised). Nothing else crosses threads.
#include <map>
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

struct Shared {
  explicit Shared(const config::Config& cfg);

  const config::Config& cfg;
  std::shared_ptr<const rules::RuleSet> rules;
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
  // What the config and rules files held when loaded (SHA-256, 16 hex digits), and when.
  std::string config_digest;
  std::chrono::system_clock::time_point loaded_at = std::chrono::system_clock::now();
  limits::LocalLimiter local_limiter;
  limits::TrustedProxies trusted_proxies;
  auth::FailureBudget failure_budget{local_limiter, limits::Policy{"auth_failures", cfg.auth.failure_limit, cfg.auth.failure_window.count(),
                                                                   cfg.auth.failure_limit}};
};

}  // namespace pitstop::app
