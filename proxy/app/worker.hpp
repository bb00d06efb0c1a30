#pragma once
// One worker thread's world: its event loop, listener, Redis clients, MariaDB pool, identity
// verifier and L2 store. Only `Shared` (rules, L1, single-flight) is shared with other workers.
#include <boost/asio/detail/concurrency_hint.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/app/shared.hpp"
#include "proxy/auth/auth.hpp"
#include "proxy/cache/read_through.hpp"
#include "proxy/cache/store.hpp"
#include "proxy/config/config.hpp"
#include "proxy/db/db.hpp"
#include "proxy/http/http.hpp"
#include "proxy/invalidation/binlog.hpp"
#include "proxy/invalidation/erp_events.hpp"
#include "proxy/invalidation/invalidation.hpp"
#include "proxy/limits/limits.hpp"
#include "proxy/metrics/metrics.hpp"
#include "proxy/origin/origin.hpp"
#include "proxy/perm/perm.hpp"
#include "proxy/redis/client.hpp"
#include "proxy/upstream/upstream.hpp"

namespace pitstop::app {

class Worker;

class Router : public http::Handler {
 public:
  explicit Router(Worker& worker) : worker_(worker) {}
  boost::asio::awaitable<http::Response> handle(const http::Request& request) override;
  bool relays(const http::Request& head) const override;
  boost::asio::awaitable<http::Passage> pass(const http::Request& head) override;

 private:
  struct Matched {
    const rules::Rule* rule = nullptr;  // none: 404 once the client is known
    rules::Values captures;
  };
  // The rate limit's verdict for a request: its fields for the answer, or the refusal itself.
  struct Limited {
    std::optional<limits::Policy> policy;
    limits::Decision decision;
    std::optional<http::Response> refusal;
    void stamp(http::Response& r) const;
  };
  // For a resource of a doctype the ERP's permissions cover (proxy/perm): a refusal, or the
  // fingerprint that keys the answer (empty: not covered, the rules file decides).
  struct ErpDecision {
    std::optional<http::Problem> refusal;
    std::string fingerprint;  // empty: the ERP's permissions do not decide (the rules file does)
    std::shared_ptr<const perm::Snapshot> permissions;  // what decided, kept for a write's own checks
    perm::User user;
    std::optional<origin::Viewer> viewer() const {
      if (fingerprint.empty()) return std::nullopt;
      return origin::Viewer{*permissions, user};
    }
  };
  // What the metrics and the access log learn of a request as its steps run.
  struct Account {
    std::shared_ptr<const Live> live;  // held until the request ends: a reload does not change it
    const rules::Rule* rule = nullptr;
    std::string_view path = "other";  // read, write, relay, health, other
    std::optional<cache::Served> served;
    std::int64_t remaining = -1;
    std::shared_ptr<double> origin_s;  // the origin fetch this request's source made, if any
    const auth::Identity* identity = nullptr;
  };
  boost::asio::awaitable<http::Response> steps(const http::Request& req, Account& account);
  // The answer's X-Request-Id, its metrics and its access log line.
  void account_for(const http::Request& req, http::Response& response, const Account& account,
                   std::chrono::steady_clock::time_point started);
  std::string request_id(std::string_view presented);
  std::function<void(const http::Passage&)> relayed(const http::Request& head, const auth::Identity& identity, std::int64_t remaining);
  boost::asio::awaitable<http::Response> health(const http::Request& req);
  boost::asio::awaitable<boost::system::result<auth::IdentityPtr, auth::Failure>> identify(const http::Request& req);
  static http::Response too_many_failures(const auth::Failure& f);
  boost::asio::awaitable<Limited> limit(const config::Config& cfg, const http::Request& req, const rules::Rule* rule,
                                        const auth::Identity& identity);
  // Everything after the limit: the rule's own checks in Frappe's order, then the read or write.
  boost::asio::awaitable<http::Response> admitted(const http::Request& req, Matched& m, const std::string& path,
                                                  const boost::system::result<auth::IdentityPtr, auth::Failure>& identified,
                                                  Account& account);
  boost::asio::awaitable<http::Response> serve(cache::Read read, const http::Request& req, Account& account);
  boost::asio::awaitable<http::Response> write(const Live& live, const rules::Rule& rule, const rules::Values& captures,
                                               const auth::Identity& identity, const http::Request& req, const ErpDecision& erp);
  // A write a rule with the http origin forwards to the ERP; its tags are settled before the answer.
  boost::asio::awaitable<http::Response> write_via_erp(const Live& live, const rules::Values& captures, const http::Request& req);
  boost::asio::awaitable<void> settle(invalidation::Event event, std::uint64_t outbox_id);
  // Why the identity may not do this (403), or nothing.
  std::optional<std::string> permission_denied(const rules::RuleSet& rules, const rules::Rule& rule, const rules::Values& captures,
                                               const auth::Identity& id, bool erp_decides) const;
  using Decided = std::shared_ptr<const ErpDecision>;
  boost::asio::awaitable<Decided> erp_permissions(const rules::RuleSet& rules, const rules::Rule& rule, const rules::Values& captures,
                                                  const auth::Identity& id);
  // One decision for the request (its rule's reveals, or its resource's doctype and action).
  static ErpDecision decide(const std::shared_ptr<const perm::Snapshot>& s, const rules::Rule& rule, const std::string* doctype,
                            std::optional<perm::Action> action, const auth::Identity& id);
  // Decisions already made with this snapshot, by rule, doctype, user and roles: a hit asks the
  // same question over and over, and its answer (grants, a SHA-256) costs more than a lookup.
  struct DecisionMemo {
    std::shared_ptr<const perm::Snapshot> snapshot;
    std::unordered_map<std::string, Decided> decisions;
    std::string key;  // the lookup's key, built in place (its capacity kept)
  } memo_;

  Worker& worker_;
  std::chrono::steady_clock::time_point last_fence_note_{};
  std::uint64_t erp_writes_ = 0;
  std::uint64_t request_ids_ = 0;
  std::uint64_t request_id_seed_ = 0;
};

// What the rules' origins use on this worker (its MariaDB pool, the table catalog) comes
// through origin::Context.
class Worker final : public origin::Context {
 public:
  Worker(Shared& shared, int index);
  ~Worker() override;

  boost::asio::io_context& ioc() { return ioc_; }
  const config::Config& config() const { return shared_.cfg; }
  Shared& shared() { return shared_; }
  redis::Client& redis_cache() { return cache_; }
  redis::Client& redis_queue() { return queue_; }
  db::Pool& primary() override { return primary_; }
  auth::Verifier& verifier() { return verifier_; }
  cache::Store& store() { return store_; }
  cache::ReadThrough& read_through() { return read_through_; }
  invalidation::Barrier& barrier() { return barrier_; }
  // Worker 0 only: the lease, the pings and the subscription (nullptr elsewhere).
  const invalidation::Membership* membership() const { return membership_.get(); }
  limits::Limiter& limiter() { return limiter_; }
  const upstream::Pool* upstream_pool() const { return upstream_.get(); }
  http::Listener& listener() { return listener_; }
  bool draining() const { return draining_; }
  int index() const { return index_; }
  // This worker's counters (its thread only); sample() copies them with the components' own.
  metrics::Sink& metrics() { return metrics_; }
  // On this worker's thread: its numbers for a scrape (worker 0 adds the outbox backlog).
  boost::asio::awaitable<metrics::Sample> sample();
  boost::asio::awaitable<void> sample_outbox(metrics::Sample& s);

  // The table metadata of the configured doctypes (read once, retried until it works).
  boost::asio::awaitable<boost::system::result<std::shared_ptr<const origin::Catalog>, http::Problem>> catalog() override;
  // The rules of the Live this worker last picked up (origins look doctypes up by name in them).
  const rules::RuleSet& rules() const override { return *live_->rules; }
  // The config and rules new requests begin with: picked up again after a reload (an atomic load
  // per call, the lock only when a reload happened).
  const std::shared_ptr<const Live>& live();
  origin::ListLimits list_limits() const override;
  http::Upstream* upstream() override { return upstream_.get(); }
  boost::asio::awaitable<boost::system::result<std::shared_ptr<const perm::Snapshot>, http::Problem>> permissions() override;

  // After a write or a delivered event: drop this instance's L1 entries of the tags, now.
  void invalidate_locally(const std::vector<std::string>& tags);

  // Runs the event loop on a new thread.
  void start();
  // Posted to the worker's thread: stop accepting, finish requests, then `done` (on that thread).
  void drain(std::function<void()> done);
  // Posted: cut every connection now, close clients, stop the loop.
  void shutdown();
  void join();

 private:
  Shared& shared_;
  int index_;
  metrics::Sink metrics_;
  // Every I/O object of a worker lives on its thread: no locking in the reactor. Other threads
  // only post (single-flight wake-ups, drain), which the scheduler still locks for.
  boost::asio::io_context ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  redis::Client cache_;
  redis::Client queue_;
  db::Pool primary_;
  auth::Verifier verifier_;
  cache::Store store_;
  cache::ReadThrough read_through_;
  std::unique_ptr<redis::Client> erp_;
  invalidation::Invalidator invalidator_;
  invalidation::Barrier barrier_;
  limits::Limiter limiter_;
  // Worker 0 only: the subscriber that keeps L1 honest, the lease, and the outbox relay.
  std::unique_ptr<redis::Client> events_;
  std::unique_ptr<invalidation::Membership> membership_;
  std::unique_ptr<invalidation::Relay> relay_;
  std::unique_ptr<invalidation::BinlogWatch> binlog_;
  // Worker 0, with erp.events_redis_url: the ERP's own events as invalidations.
  std::unique_ptr<redis::Client> erp_events_client_;
  std::unique_ptr<invalidation::ErpEvents> erp_events_;
  std::shared_ptr<const origin::Catalog> catalog_;
  std::shared_ptr<const rules::RuleSet> catalog_rules_;  // the rules the catalog was read for
  std::shared_ptr<const Live> live_;
  std::uint64_t live_version_ = 0;
  // The ERP's permissions as this worker last read them, and what said they were current then.
  struct Permissions {
    std::shared_ptr<const perm::Snapshot> snapshot;
    std::uint64_t changes = 0;     // Shared::permission_changes when the read began
    std::uint64_t generation = 0;  // the trust generation then
    std::chrono::steady_clock::time_point at{};  // when the read ended
    std::uint64_t reads = 0;                      // successful reads so far
    std::shared_ptr<boost::asio::steady_timer> loading;  // while a read runs: cancelled when it ends
  } perms_;
  bool permissions_current() const;
  Router router_;
  // Only with upstream.url: the ERP that what no rule answers is relayed to.
  std::unique_ptr<upstream::Pool> upstream_;
  http::Listener listener_;
  std::thread thread_;
  bool draining_ = false;
};

// /readyz: Redis cache, Redis queue and MariaDB reachable; 503 names what is not.
boost::asio::awaitable<http::Response> readiness(Worker& worker);

}  // namespace pitstop::app
