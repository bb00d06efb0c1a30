#pragma once
// What the workers share: the rules and named queries (immutable after start-up), the L1 cache
// and the single-flight table (both internally synchronised). Nothing else crosses threads.
#include <map>
#include <memory>
#include <string>

#include <atomic>

#include "proxy/cache/cache.hpp"
#include "proxy/invalidation/invalidation.hpp"
#include "proxy/limits/limits.hpp"
#include "proxy/config/config.hpp"
#include "proxy/origin/origin.hpp"
#include "proxy/rules/rules.hpp"

namespace pitstop::app {

struct Shared {
  explicit Shared(const config::Config& cfg);

  const config::Config& cfg;
  std::shared_ptr<const rules::RuleSet> rules;
  std::map<std::string, origin::NamedQuery> queries;
  cache::L1 l1;
  cache::Flights flights;
  invalidation::Log invalidations;
  limits::LocalLimiter local_limiter;
  limits::TrustedProxies trusted_proxies;
  // L1 is used only while this instance hears invalidation events: without them it could keep
  // answers that a write on another instance made stale.
  std::atomic<bool> l1_live{false};
  // Set when a Redis operation failed: entries there may have missed an invalidation until the
  // outbox relay has caught up, so Redis is not used until then (steady clock, ns; 0 = trusted).
  std::atomic<std::int64_t> l2_suspect_since{0};

  bool l2_trusted() const { return l2_suspect_since.load(std::memory_order_relaxed) == 0; }
  void l2_failed();
};

}  // namespace pitstop::app
