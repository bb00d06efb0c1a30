// The read path: route, identify, then L1 -> Redis -> origin with single-flight, stale answers
// where the category allows them, and RFC 9211 Cache-Status on every answer from a rule.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include "proxy/app/worker.hpp"
#include "proxy/log/log.hpp"
#include "proxy/origin/write.hpp"

namespace pitstop::app {

namespace asio = boost::asio;
using cache::EntryPtr;
using cache::Outcome;
using cache::OutcomePtr;

namespace {

http::Response from_failure(unsigned status, std::string_view exc_type, std::string_view message) {
  return http::error_response(status, exc_type, message);
}

std::string cache_status(std::string_view params) {
  std::string s = "pitstop; ";
  s.append(params);
  return s;
}

http::Response answer(const EntryPtr& e, std::string status_field, const http::Request& req) {
  http::Response r;
  r.status = e->status;
  r.content_type = e->content_type;
  if (!e->etag.empty()) r.set_header("ETag", e->etag);
  r.set_header("Cache-Status", std::move(status_field));
  const auto inm = req.header("If-None-Match");
  if (e->status == 200 && !inm.empty() && !e->etag.empty() && cache::etag_matches(inm, e->etag)) {
    r.status = 304;
    return r;
  }
  // The cached body is sent from the entry itself, without a copy.
  r.shared_body = std::shared_ptr<const std::string>(e, &e->body);
  return r;
}

origin::ListRequest list_request(const rules::Values& query) {
  origin::ListRequest l;
  auto take = [&](const char* name, std::optional<std::string>& out) {
    if (const std::string* v = query.find(name)) out = *v;
  };
  take("fields", l.fields);
  take("filters", l.filters);
  take("or_filters", l.or_filters);
  take("order_by", l.order_by);
  take("group_by", l.group_by);
  take("limit_start", l.limit_start);
  take("limit_page_length", l.limit_page_length);
  take("limit", l.limit);
  take("as_dict", l.as_dict);
  return l;
}

std::string method_class(http::Method m) {
  switch (m) {
    case http::Method::post: return "post";
    case http::Method::put:
    case http::Method::patch: return "put";
    case http::Method::delete_: return "delete";
    default: return "get";
  }
}

// The class's quota, the rule's own if it has one, else the most generous of the user's roles'.
limits::Policy policy_for(const config::Config& cfg, const rules::Rule& rule, const auth::Identity& id, const std::string& cls) {
  config::RateLimit q = cfg.rate_limits.at(cls);
  if (rule.rate_limit) {
    q = *rule.rate_limit;
  } else {
    for (const auto& role : id.roles) {
      auto r = cfg.limiting.roles.find(role);
      if (r == cfg.limiting.roles.end()) continue;
      auto c = r->second.find(cls);
      if (c == r->second.end()) continue;
      const double mine = static_cast<double>(c->second.limit) / static_cast<double>(c->second.window.count());
      const double best = static_cast<double>(q.limit) / static_cast<double>(q.window.count());
      if (mine > best || (mine == best && c->second.burst > q.burst)) q = c->second;
    }
  }
  return limits::Policy{cls, q.limit, q.window.count(), q.burst};
}

std::string client_address(Shared& shared, const http::Request& req) {
  return shared.trusted_proxies.client(req.peer().address(), req.header("X-Forwarded-For"));
}

bool any_role(const auth::Identity& id, const std::vector<std::string>& roles) {
  for (const auto& r : roles)
    if (id.has_role(r)) return true;
  return false;
}

}  // namespace

std::optional<std::string> Router::permission_denied(const rules::Rule& rule, const rules::Values& captures,
                                                     const auth::Identity& id) const {
  if (!rule.roles.empty() && !any_role(id, rule.roles)) return std::string("Not permitted: this needs the role ") + rule.roles.front();
  const std::string* dt = captures.find("doctype");
  if (!dt) return std::nullopt;
  const rules::Doctype* d = worker_.shared().rules->doctype(*dt);
  if (!d) return std::nullopt;
  const char* action = "read";
  if (rule.origin == rules::Origin::resource_insert) action = "create";
  else if (rule.origin == rules::Origin::resource_update) action = "write";
  else if (rule.origin == rules::Origin::resource_delete) action = "delete";
  const auto* allowed = d->allowed(action);
  if (allowed && !any_role(id, *allowed)) return "Insufficient Permission for " + d->name;
  return std::nullopt;
}

std::chrono::milliseconds Router::cfg_origin_timeout() const { return worker_.config().timeouts.origin; }

asio::awaitable<http::Response> Router::handle(const http::Request& req) {
  const auto raw_path = req.path();
  if (raw_path == "/healthz" || raw_path == "/readyz") {
    if (req.method() != http::Method::get && req.method() != http::Method::head) {
      auto r = http::error_response(405, "MethodNotAllowed", "Use GET");
      r.set_header("Allow", "GET, HEAD");
      co_return r;
    }
    if (raw_path == "/healthz") {
      auto r = http::json_response(200, "{\"status\":\"ok\"}");
      r.set_header("Cache-Control", "no-store");
      co_return r;
    }
    co_return co_await readiness(worker_);
  }

  auto path = rules::decode_path(raw_path);
  if (!path) co_return from_failure(path.error().status, path.error().exc_type, path.error().message);
  rules::Values captures;
  const rules::Rule* rule = worker_.shared().rules->match(req.method(), *path, captures);
  if (!rule) {
    std::string message = "No route for ";
    message.append(req.method_text());
    message += ' ';
    message.append(path->substr(0, 200));
    co_return http::error_response(404, "DoesNotExistError", message);
  }

  // Refusals from a rule say so in Cache-Status too: the cache was not consulted.
  auto refused = [](unsigned status, std::string_view exc_type, std::string_view message) {
    auto r = from_failure(status, exc_type, message);
    r.set_header("Cache-Status", "pitstop; detail=refused");
    return r;
  };
  auto query = rules::parse_query(req.query());
  if (!query) co_return refused(query.error().status, query.error().exc_type, query.error().message);
  auto params = rules::bind_params(*rule, *query);
  if (!params) co_return refused(params.error().status, params.error().exc_type, params.error().message);
  FetchJob job;
  job.rule = rule;
  job.captures = std::move(captures);
  job.params = std::move(*params);
  std::string canonical;
  if (rule->origin == rules::Origin::resource_list) {
    job.list = list_request(*query);
    auto c = origin::canonical_list_request(job.list);
    if (!c) co_return refused(417, "ValidationError", c.error().message);
    canonical = std::move(*c);
  }

  // Nothing cached is served before the identity is verified.
  auto identified = co_await worker_.verifier().identify(req.header(http::Request::Field::authorization),
                                                        req.header(http::Request::Field::cookie));
  if (!identified) co_return refused(identified.error().status, identified.error().exc_type, identified.error().message);
  const auth::IdentityPtr identity = *identified;
  if (identity->is_guest() && !rule->allow_guest) {
    if (identity->session_expired) co_return refused(401, "SessionExpired", "Session expired");
    co_return refused(401, "AuthenticationError", "Login required: send a token, Basic or Bearer credential or a session cookie");
  }

  // The limit: before any cache or origin work, so that a refusal costs neither.
  std::optional<limits::Policy> policy;
  limits::Decision decision;
  const auto& cfg = worker_.config();
  if (cfg.limiting.enabled) {
    policy = policy_for(cfg, *rule, *identity, method_class(req.method()));
    std::string bucket = identity->is_guest() ? "ip:" + client_address(worker_.shared(), req) : "user:" + identity->user;
    if (rule->rate_limit) bucket += ":rule:" + rule->name;
    decision = co_await worker_.limiter().check(bucket, *policy);
    if (!decision.allowed) {
      if (decision.source == limits::Decision::Source::closed) {
        auto r = refused(503, "ServiceUnavailable", "Rate limits cannot be checked (Redis unreachable) and limiting.fail_mode is closed");
        r.set_header("Retry-After", "1");
        co_return r;
      }
      auto r = refused(429, "TooManyRequestsError",
                       "Too many requests: the limit of " + policy->name + " requests is " + std::to_string(policy->limit) + " per " +
                           std::to_string(policy->window_s) + " s; retry in " + std::to_string(decision.retry_after_s) + " s");
      r.set_header("Retry-After", std::to_string(decision.retry_after_s));
      r.set_header("RateLimit-Policy", limits::policy_field(*policy));
      r.set_header("RateLimit", limits::limit_field(*policy, decision));
      co_return r;
    }
  }
  // Roles: the rule's, and for resources the doctype's permission for the action.
  if (auto denied = permission_denied(*rule, job.captures, *identity)) co_return refused(403, "PermissionError", *denied);

  http::Response response;
  if (rules::is_write(rule->origin)) {
    response = co_await write(*rule, job.captures, *identity, req);
  } else {
    job.key = rules::cache_key(cfg.site, *rule, job.captures, job.params, canonical, identity->user);
    job.category = &cfg.cache.categories.at(rule->category);
    response = co_await serve(std::move(job), req);
  }
  // The limit's fields go on the answer, never into a cached entry.
  if (policy) {
    response.set_header("RateLimit-Policy", limits::policy_field(*policy));
    response.set_header("RateLimit", limits::limit_field(*policy, decision));
  }
  co_return response;
}

asio::awaitable<http::Response> Router::serve(FetchJob job, const http::Request& req) {
  auto& shared = worker_.shared();
  if (!worker_.config().cache.enabled) {
    // The no-cache baseline: every read is an origin query, nothing is kept or shared.
    auto outcome = co_await fetch(job, false);
    co_return answer(outcome->entry, cache_status("fwd=bypass; detail=cache-off"), req);
  }
  const std::int64_t now = cache::now_ms();
  const bool l1_live = shared.l1_live.load(std::memory_order_relaxed);
  EntryPtr e = l1_live ? shared.l1.get(job.key, now) : nullptr;
  const char* source = "l1";
  bool redis_down = !shared.l2_trusted();
  if (!e && !redis_down) {
    const auto asked = std::chrono::steady_clock::now();
    auto r = co_await worker_.store().get(job.key);
    if (!r) {
      redis_down = true;
      shared.l2_failed();
    } else {
      job.redis_ms = r->redis_ms;
      if (r->entry && !r->entry->dead(now)) {
        e = r->entry;
        source = "redis";
        // Not if an invalidation of its tags arrived while Redis was being asked.
        if (l1_live) shared.l1.put_if(e, [&] { return !shared.invalidations.invalidated_since(e->tag_hashes, asked); });
      }
    }
  }
  const std::string down = redis_down ? "; detail=redis-down" : "";
  if (e && e->fresh(now))
    co_return answer(e, cache_status("hit; ttl=" + std::to_string(e->ttl_left_s(now)) + "; detail=" + source), req);

  if (e && now < e->expires_ms() + e->swr_ms) {
    // Stale while revalidate: this answer now, one refresh in the background.
    auto ticket = shared.flights.join(job.key);
    if (ticket.leader) asio::co_spawn(worker_.ioc(), refresh(std::move(job), ticket.flight), asio::detached);
    co_return answer(e, cache_status("hit; ttl=" + std::to_string(e->ttl_left_s(now)) + "; detail=stale-while-revalidate"), req);
  }

  auto ticket = shared.flights.join(job.key);
  OutcomePtr outcome;
  if (ticket.leader) {
    // A fetch may have finished while this request was looking in Redis: its answer is in L1
    // (or Redis, without L1) by now, and fetching again would be a second origin query.
    EntryPtr late = shared.l1_live.load() ? shared.l1.get(job.key, cache::now_ms()) : nullptr;
    const char* late_source = "l1";
    if (!late && !shared.l1.enabled() && shared.l2_trusted()) {
      auto r = co_await worker_.store().get(job.key);
      if (r && r->entry) late = r->entry;
      late_source = "redis";
    }
    if (late && late->fresh(cache::now_ms())) {
      auto o = std::make_shared<Outcome>();
      o->entry = late;
      shared.flights.finish(job.key, ticket.flight, o);
      co_return answer(late, cache_status("hit; ttl=" + std::to_string(late->ttl_left_s(cache::now_ms())) + "; detail=" + late_source), req);
    }
    outcome = co_await fetch(job);
    shared.flights.finish(job.key, ticket.flight, outcome);
  } else {
    outcome = co_await shared.flights.wait(ticket.flight, std::chrono::steady_clock::now() + cfg_origin_timeout());
    if (!outcome) {
      if (e && cache::now_ms() < e->expires_ms() + e->sie_ms)
        co_return answer(e, cache_status("fwd=stale; ttl=" + std::to_string(e->ttl_left_s(cache::now_ms())) + "; detail=stale-if-error"), req);
      co_return from_failure(504, "GatewayTimeout", "The origin did not answer in time");
    }
  }
  const EntryPtr& got = outcome->entry;
  const std::string fwd = e ? "fwd=stale" : "fwd=uri-miss";
  if (got->status != 200) {
    const std::int64_t later = cache::now_ms();
    if (outcome->transient && e && later < e->expires_ms() + e->sie_ms)
      co_return answer(e, cache_status(fwd + "; fwd-status=" + std::to_string(got->status) + "; ttl=" +
                                       std::to_string(e->ttl_left_s(later)) + "; detail=stale-if-error"), req);
    http::Response r;
    r.status = got->status;
    r.content_type = got->content_type;
    r.shared_body = std::shared_ptr<const std::string>(got, &got->body);
    r.set_header("Cache-Status", cache_status(fwd + "; fwd-status=" + std::to_string(got->status)));
    co_return r;
  }
  std::string status = fwd;
  if (!ticket.leader) status += "; collapsed";
  else if (outcome->stored) status += "; stored";
  if (outcome->redis_down || redis_down) status += "; detail=redis-down";
  co_return answer(got, cache_status(status), req);
}

asio::awaitable<http::Response> Router::write(const rules::Rule& rule, const rules::Values& captures,
                                              const auth::Identity& identity, const http::Request& req) {
  auto& shared = worker_.shared();
  auto respond = [](http::Response r) {
    r.set_header("Cache-Status", "pitstop; fwd=method");
    return r;
  };
  const std::string* dt = captures.find("doctype");
  const rules::Doctype* doctype = dt ? shared.rules->doctype(*dt) : nullptr;
  if (!doctype) co_return respond(from_failure(404, "DoesNotExistError", "DocType not found"));
  const std::string* found = captures.find("name");
  const std::string name = found ? *found : std::string();
  std::string body(req.body());
  // Frappe also takes the document as a form field, data=<json>; without one, the body is the
  // document whatever its Content-Type says (curl -d sends JSON as a form).
  if (req.header("Content-Type").starts_with("application/x-www-form-urlencoded")) {
    auto form = rules::parse_query(body);
    if (form) {
      if (const std::string* data = form->find("data")) body = *data;
    }
  }
  auto catalog = co_await worker_.catalog();
  if (!catalog) co_return respond(from_failure(catalog.error().status, catalog.error().exc_type, catalog.error().message));
  auto written = co_await origin::write_doc(worker_.primary(), **catalog, *shared.rules, *doctype, rule.origin, name, body,
                                            identity.user, worker_.config().site);
  if (!written) co_return respond(from_failure(written.error().status, written.error().exc_type, written.error().message));

  // Committed. Before answering: this instance forgets the old answers, Redis loses them and
  // the other instances are told; then the outbox row is done. What fails here stays in the
  // outbox for the relay.
  worker_.invalidate_locally(written->tags);
  invalidation::Event event{"outbox:" + std::to_string(written->outbox_id), written->tags, "pitstop", invalidation::utc_now(),
                            worker_.config().site};
  auto ec = co_await worker_.invalidator().deliver(event);
  if (!ec) {
    const std::string id = std::to_string(written->outbox_id);
    const db::Param p[] = {std::string_view(id)};
    auto done = co_await worker_.primary().execute("UPDATE `pitstop_outbox` SET `done` = 1, `done_at` = NOW(6) WHERE `id` = ?", p, false);
    // A deadlock with a concurrent writer or the relay (1213) or a lock wait timeout (1205) is
    // worth one more try; failing that, the relay delivers the row again, which is harmless.
    if (!done && (done.error().server_code == 1213 || done.error().server_code == 1205))
      done = co_await worker_.primary().execute("UPDATE `pitstop_outbox` SET `done` = 1, `done_at` = NOW(6) WHERE `id` = ?", p, false);
    if (!done) log::warn("outbox row ", id, " delivered but not marked done (", done.error().message, "); the relay will deliver it again");
  } else {
    shared.l2_failed();
    log::warn("invalidation of ", event.id, " not delivered (", ec.message(), "); the outbox relay retries it");
  }
  co_return respond(http::json_response(written->status, std::move(written->body)));
}

asio::awaitable<void> Router::refresh(FetchJob job, std::shared_ptr<cache::Flights::Flight> flight) {
  auto outcome = co_await fetch(job);
  worker_.shared().flights.finish(job.key, flight, outcome);
}

asio::awaitable<OutcomePtr> Router::fetch(const FetchJob& job, bool keep) {
  auto& shared = worker_.shared();
  auto out = std::make_shared<Outcome>();
  // Anything invalidated from now on may be newer than what the origin is about to say.
  const auto started = std::chrono::steady_clock::now();
  auto body = co_await worker_.fetch_origin(*job.rule, job.captures, job.params, job.list);
  if (!body) {
    auto e = std::make_shared<cache::Entry>();
    auto r = http::error_response(body.error().status, body.error().exc_type, body.error().message);
    e->status = r.status;
    e->body = std::move(r.body);
    out->entry = std::move(e);
    out->transient = body.error().transient;
    co_return out;
  }
  auto e = std::make_shared<cache::Entry>();
  e->key = job.key;
  e->status = 200;
  e->etag = cache::strong_etag(*body);
  e->stored_ms = cache::now_ms();
  e->ttl_ms = job.category->ttl.count() * 1000;
  e->swr_ms = job.category->stale_while_revalidate.count() * 1000;
  e->sie_ms = job.category->stale_if_error.count() * 1000;
  e->tags = rules::render_tags(job.rule->tags, job.captures, job.params, *body);
  cache::hash_tags(*e);
  e->body = std::move(*body);
  // Built by appending, the body has up to twice its size in capacity: L1 holds what it counts.
  e->body.shrink_to_fit();
  out->entry = e;
  if (!keep) co_return out;
  // An answer tagged beyond reason could not be invalidated reliably: serve it, don't keep it.
  if (e->tags.size() > kMaxTags) {
    log::warn("rule ", job.rule->name, ": ", e->tags.size(), " tags on one answer; not cached");
    co_return out;
  }
  // A write that landed while this answer was read makes it possibly stale: answer, don't keep.
  if (shared.invalidations.invalidated_since(e->tag_hashes, started)) co_return out;
  // Redis first: it refuses the answer if one of its tags was invalidated after the lookup
  // (job.redis_ms, Redis's clock), which covers writes on other instances too.
  if (job.redis_ms != 0 && shared.l2_trusted()) {
    auto stored = co_await worker_.store().put(*e, job.redis_ms);
    if (!stored) {
      out->redis_down = true;
      shared.l2_failed();
    } else if (!*stored) {
      co_return out;
    }
  } else {
    out->redis_down = true;
  }
  // Redis has the tag strings now; L1 indexes by hash (a schedule's 1,500 tags: ~100 kB less).
  std::vector<std::string>().swap(e->tags);
  if (shared.l1_live.load()) shared.l1.put_if(e, [&] { return !shared.invalidations.invalidated_since(e->tag_hashes, started); });
  out->stored = true;
  co_return out;
}

}  // namespace pitstop::app
