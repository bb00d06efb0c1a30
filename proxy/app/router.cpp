// The read path: route, identify, then L1 -> Redis -> origin with single-flight, stale answers
// where the category allows them, and RFC 9211 Cache-Status on every answer from a rule.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include <random>

#include "proxy/app/worker.hpp"
#include "proxy/log/log.hpp"
#include "proxy/origin/write.hpp"

namespace pitstop::app {

namespace asio = boost::asio;
using cache::EntryPtr;

namespace {

// The client's address as X-Forwarded-For carries it. IPv4 by hand: Asio's to_string goes through
// inet_ntop and sprintf, a share of a relayed request's CPU that showed in its profile.
std::string address_text(const asio::ip::address& a) {
  if (!a.is_v4()) return a.to_string();
  std::string out;
  for (const unsigned char byte : a.to_v4().to_bytes()) {
    if (!out.empty()) out += '.';
    if (byte >= 100) out += static_cast<char>('0' + byte / 100);
    if (byte >= 10) out += static_cast<char>('0' + byte / 10 % 10);
    out += static_cast<char>('0' + byte % 10);
  }
  return out;
}

http::Response from_failure(unsigned status, std::string_view exc_type, std::string_view message) {
  return http::error_response(status, exc_type, message);
}

std::string_view origin_kind(rules::OriginKind k) {
  switch (k) {
    case rules::OriginKind::sql: return "sql";
    case rules::OriginKind::resource_doc: return "resource_doc";
    case rules::OriginKind::resource_list: return "resource_list";
    case rules::OriginKind::http: return "http";
    default: return "write";
  }
}

std::string_view decided_by(limits::Decision::Source s) {
  switch (s) {
    case limits::Decision::Source::redis: return "redis";
    case limits::Decision::Source::lease: return "lease";
    case limits::Decision::Source::local: return "local";
    case limits::Decision::Source::shortcut: return "shortcut";
    case limits::Decision::Source::closed: return "closed";
  }
  return "redis";
}

// An X-Request-Id worth passing on: short, and nothing a log line or a header could trip on.
bool usable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (const char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == ':'))
      return false;
  return true;
}

// The answer to a read, from its entry: a cached body is sent from the entry itself, without a
// copy; a matching If-None-Match gets 304.
http::Response answer(const cache::Answer& a, const http::Request& req) {
  const EntryPtr& e = a.entry;
  http::Response r;
  r.status = e->status;
  r.content_type = e->content_type;
  r.headers = e->headers;
  if (!e->etag.empty()) r.set_header("ETag", e->etag);
  r.set_header("Cache-Status", cache::cache_status(a));
  const auto inm = req.header("If-None-Match");
  if (e->status == 200 && !inm.empty() && !e->etag.empty() && cache::etag_matches(inm, e->etag)) {
    r.status = 304;
    return r;
  }
  r.shared_body = std::shared_ptr<const std::string>(e, &e->body);
  return r;
}

// A rule's origin, as the read path's source: owns what it needs, since a refresh outlives the
// request that started it.
class RuleSource final : public cache::Source {
 public:
  RuleSource(origin::Context& context, std::shared_ptr<const Live> live, const rules::Rule& rule, origin::Ask ask, metrics::Sink& metrics,
             std::shared_ptr<double> took)
      : context_(context), live_(std::move(live)), rule_(rule), ask_(std::move(ask)), metrics_(metrics), took_(std::move(took)) {}

  asio::awaitable<cache::Fetched> fetch() override {
    const auto started = std::chrono::steady_clock::now();
    auto got = co_await rule_.origin->fetch(rule_, ask_, context_);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    *took_ += took;
    metrics_.origin(origin_kind(rule_.kind), took);
    co_return fetched(std::move(got));
  }

 private:
  static cache::Fetched fetched(boost::system::result<origin::Answer, http::Problem> got) {
    cache::Fetched out;
    if (!got) {
      auto r = http::error_response(got.error());
      out.status = r.status;
      out.body = std::move(r.body);
      out.transient = got.error().transient;
      return out;
    }
    out.status = got->status;
    out.content_type = std::move(got->content_type);
    out.headers = std::move(got->headers);
    out.body = std::move(got->body);
    out.tags = std::move(got->tags);
    out.variant = got->variant;
    out.no_store = got->no_store;
    return out;
  }

  origin::Context& context_;
  std::shared_ptr<const Live> live_;  // the rule lives in its rules: kept for a refresh that outlives the request
  const rules::Rule& rule_;
  origin::Ask ask_;
  metrics::Sink& metrics_;
  std::shared_ptr<double> took_;
};

// What the http origin asks the ERP with: the request as the client sent it.
origin::Ask::Sent sent_as(const http::Request& req) {
  origin::Ask::Sent s;
  s.path = std::string(req.path());
  s.host = std::string(req.header("Host"));
  s.authorization = std::string(req.header(http::Request::Field::authorization));
  s.cookie = std::string(req.header(http::Request::Field::cookie));
  s.accept_language = std::string(req.header("Accept-Language"));
  return s;
}

std::string_view method_class(http::Method m) {
  switch (m) {
    case http::Method::post: return "post";
    case http::Method::put:
    case http::Method::patch: return "put";
    case http::Method::delete_: return "delete";
    default: return "get";
  }
}

// The class's quota, the rule's own if it has one, else the most generous of the user's roles'.
limits::Policy policy_for(const config::Config& cfg, const rules::Rule* rule, const auth::Identity& id, std::string_view cls_view) {
  const std::string cls(cls_view);
  config::RateLimit q = cfg.rate_limits.at(cls);
  if (rule && rule->rate_limit) {
    q = *rule->rate_limit;
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

// Refusals from a rule say so in Cache-Status too: the cache was not consulted.
http::Response refused(unsigned status, std::string_view exc_type, std::string_view message) {
  auto r = from_failure(status, exc_type, message);
  r.set_header("Cache-Status", cache::cache_status({.served = cache::Served::refused}));
  return r;
}
http::Response refused(const http::Problem& p) { return refused(p.status, p.exc_type, p.message); }

std::string client_address(Shared& shared, const http::Request& req) {
  return shared.trusted_proxies.client(req.peer().address(), req.header("X-Forwarded-For"));
}

bool any_role(const auth::Identity& id, const std::vector<std::string>& roles) {
  for (const auto& r : roles)
    if (id.has_role(r)) return true;
  return false;
}

}  // namespace

std::optional<std::string> Router::permission_denied(const rules::RuleSet& rules, const rules::Rule& rule, const rules::Values& captures,
                                                     const auth::Identity& id, bool erp_decides) const {
  if (!rule.roles.empty() && !any_role(id, rule.roles)) return std::string("Not permitted: this needs the role ") + rule.roles.front();
  if (erp_decides) return std::nullopt;
  const std::string* dt = captures.find("doctype");
  if (!dt) return std::nullopt;
  const rules::Doctype* d = rules.doctype(*dt);
  if (!d) return std::nullopt;
  const char* action = "read";
  if (rule.kind == rules::OriginKind::resource_insert) action = "create";
  else if (rule.kind == rules::OriginKind::resource_update) action = "write";
  else if (rule.kind == rules::OriginKind::resource_delete) action = "delete";
  const auto* allowed = d->allowed(action);
  if (allowed && !any_role(id, *allowed)) return "Insufficient Permission for " + d->name;
  return std::nullopt;
}

namespace {

// Per worker: enough for every user of a workshop on every doctype, small enough to forget.
constexpr std::size_t kMaxMemo = 50000;

std::optional<perm::Action> resource_action(rules::OriginKind kind) {
  switch (kind) {
    case rules::OriginKind::resource_doc: return perm::Action::read_document;
    case rules::OriginKind::resource_list: return perm::Action::read_list;
    case rules::OriginKind::resource_insert: return perm::Action::insert;
    case rules::OriginKind::resource_update: return perm::Action::update;
    case rules::OriginKind::resource_delete: return perm::Action::remove;
    default: return std::nullopt;
  }
}

}  // namespace

asio::awaitable<Router::Decided> Router::erp_permissions(const rules::RuleSet& rules, const rules::Rule& rule,
                                                         const rules::Values& captures, const auth::Identity& id) {
  static const Decided undecided = std::make_shared<const ErpDecision>();
  // A named query's answer must be wholly readable in every doctype it reveals, unless the rule
  // is open to guests, which makes its answer public.
  const bool reveals = !rule.reveals.empty() && !rule.allow_guest;
  auto action = resource_action(rule.kind);
  const std::string* dt = captures.find("doctype");
  if (!dt || !rules.doctype(*dt)) action.reset();
  if (!reveals && !action) co_return undecided;
  auto perms = co_await worker_.permissions();
  if (!perms) {
    ErpDecision failed;
    failed.refusal = perms.error();
    co_return std::make_shared<const ErpDecision>(std::move(failed));
  }
  if (memo_.snapshot != *perms) {
    memo_.decisions.clear();
    memo_.snapshot = *perms;
  }
  std::string& key = memo_.key;
  key.assign(rule.name).push_back('\x1f');
  if (action) key.append(*dt);
  key.push_back('\x1f');
  key.append(id.user).push_back('\x1f');
  for (const auto& r : id.roles) key.append(r).push_back('\x1e');
  if (auto it = memo_.decisions.find(key); it != memo_.decisions.end()) co_return it->second;
  auto made = std::make_shared<const ErpDecision>(decide(*perms, rule, action ? dt : nullptr, action, id));
  if (memo_.decisions.size() >= kMaxMemo) memo_.decisions.clear();
  memo_.decisions.emplace(key, made);
  co_return made;
}

Router::ErpDecision Router::decide(const std::shared_ptr<const perm::Snapshot>& snapshot, const rules::Rule& rule,
                                   const std::string* doctype, std::optional<perm::Action> action, const auth::Identity& id) {
  const perm::Snapshot& s = *snapshot;
  ErpDecision out;
  out.user = perm::user_of(id.user, id.roles);
  if (!rule.reveals.empty() && !rule.allow_guest)
    for (const auto& revealed : rule.reveals)
      if (perm::grant(s, out.user, revealed).known)
        if ((out.refusal = perm::refusal(s, out.user, revealed, perm::Action::reveal))) return out;
  if (!action || !perm::grant(s, out.user, *doctype).known) return out;
  out.refusal = perm::refusal(s, out.user, *doctype, *action);
  if (out.refusal) return out;
  out.fingerprint = perm::fingerprint(s, out.user, *doctype);
  out.permissions = snapshot;
  return out;
}

asio::awaitable<http::Response> Router::handle(const http::Request& req) {
  const auto started = std::chrono::steady_clock::now();
  Account account;
  http::Response response = co_await steps(req, account);
  account_for(req, response, account, started);
  co_return response;
}

asio::awaitable<http::Response> Router::steps(const http::Request& req, Account& account) {
  account.live = worker_.live();
  const Live& live = *account.live;
  const auto raw_path = req.path();
  if (raw_path == "/healthz" || raw_path == "/readyz") {
    account.path = "health";
    co_return co_await health(req);
  }

  auto path = rules::decode_path(raw_path);
  if (!path) co_return http::error_response(path.error());
  Matched m;
  m.rule = live.rules->match(req.method(), *path, m.captures);
  account.rule = m.rule;

  // Who asks, before anything else is looked at: an anonymous request learns nothing but 401.
  auto identified = co_await identify(req);
  if (!identified && identified.error().policy) co_return too_many_failures(identified.error());
  const auth::IdentityPtr identity = identified ? *identified : worker_.verifier().guest();
  account.identity = identity.get();

  // The limit: before any cache or origin work, so that a refusal costs neither. Refusals of
  // every kind carry its fields, so that a client sees its budget whatever it did wrong.
  Limited limited = co_await limit(*live.cfg, req, m.rule, *identity);
  if (limited.policy) account.remaining = limited.decision.remaining;
  if (limited.refusal) co_return std::move(*limited.refusal);
  http::Response response = co_await admitted(req, m, *path, identified, account);
  limited.stamp(response);
  // Every answer depends on the credentials it was given: no shared cache in front may reuse it
  // for another client, and a private one must ask again (the ETag makes that cheap).
  response.set_header("Cache-Control", "private, no-cache");
  response.set_header("Vary", "Cookie, Authorization");
  co_return response;
}

std::string Router::request_id(std::string_view presented) {
  if (usable_request_id(presented)) return std::string(presented);
  if (request_id_seed_ == 0) {
    std::random_device rd;
    request_id_seed_ = ((static_cast<std::uint64_t>(rd()) << 32) | rd()) | 1;
  }
  // A bijection of the counter (odd multiplier, xor): unique per worker, unguessable enough.
  const std::uint64_t v = (++request_ids_ * 0x9E3779B97F4A7C15ull) ^ request_id_seed_;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[static_cast<std::size_t>(i)] = kHex[(v >> (60 - 4 * i)) & 0xF];
  return out;
}

void Router::account_for(const http::Request& req, http::Response& response, const Account& account,
                         std::chrono::steady_clock::time_point started) {
  const std::string id = request_id(req.header("X-Request-Id"));
  response.set_header("X-Request-Id", id);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  // Not a rule's: "-health" for the probes, "" for no rule at all.
  const std::string_view rule = account.rule ? std::string_view(account.rule->name)
                                : account.path == "health" ? std::string_view("-health") : std::string_view();
  const std::string_view cls = method_class(req.method());
  auto& sink = worker_.metrics();
  std::string_view path = account.path;
  if (account.rule) path = rules::is_write(account.rule->kind) || (account.served && *account.served == cache::Served::write) ? "write" : "read";
  sink.request(rule, cls, response.status, path, took);
  // A rule's request that reached neither the cache nor a write was refused before them.
  const cache::Served served = account.served ? *account.served : cache::Served::refused;
  if (account.rule) sink.served(rule, account.rule->category, cache::name(served));
  auto* log = worker_.shared().access_log.get();
  if (!log || !log->enabled()) return;
  log::AccessRecord r;
  r.time = std::chrono::system_clock::now();
  r.request_id = id;
  const std::string client = client_address(worker_.shared(), req);
  r.client = client;
  if (account.identity && !account.identity->is_guest()) r.user = account.identity->user;
  r.method = req.method_text();
  r.target = req.target();
  r.rule = rule;
  r.status = response.status;
  r.bytes = req.method() == http::Method::head || response.status == 304 ? 0 : response.body_view().size();
  if (account.rule) r.cache = cache::name(served);
  r.total_ms = took * 1000;
  r.origin_ms = account.origin_s ? *account.origin_s * 1000 : 0;
  r.remaining = account.remaining;
  log->write(worker_.index(), r);
}

bool Router::relays(const http::Request& head) const {
  if (!worker_.config().upstream.enabled()) return false;  // the upstream needs a restart to change
  const auto raw_path = head.path();
  if (raw_path == "/healthz" || raw_path == "/readyz") return false;
  // A path pitstop cannot decode is answered here (400), as before an upstream existed.
  auto path = rules::decode_path(raw_path);
  if (!path) return false;
  rules::Values captures;
  return worker_.live()->rules->match(head.method(), *path, captures) == nullptr;
}

// Relayed requests are limited like any other, but credentials are the ERP's business: the
// identity is the one verified within auth.identity_ttl if there is one (a keyed hash), else
// the client's address. Nothing is refused for what the credentials say.
asio::awaitable<http::Passage> Router::pass(const http::Request& head) {
  http::Passage out;
  auto& shared = worker_.shared();
  const auto peer = head.peer().address();
  const std::string peer_text = address_text(peer);
  const auto xff = head.header(http::Request::Field::x_forwarded_for);
  out.forwarded_for = shared.trusted_proxies.trusted(peer) && !xff.empty() ? std::string(xff) + ", " + peer_text : peer_text;
  std::string_view cookies[8];
  const std::size_t nc = std::min<std::size_t>(head.headers(http::Request::Field::cookie, cookies, 8), 8);
  std::string_view authorization[1];
  const std::size_t na = head.headers(http::Request::Field::authorization, authorization, 1);
  auth::IdentityPtr identity;
  if (auto p = auth::presented(authorization, std::min<std::size_t>(na, 1), cookies, nc)) identity = worker_.verifier().remembered(p->authorization, p->sid);
  if (!identity) identity = worker_.verifier().guest();
  const std::shared_ptr<const Live> live = worker_.live();
  Limited limited = co_await limit(*live->cfg, head, nullptr, *identity);
  out.request_id = request_id(head.header("X-Request-Id"));
  if (limited.refusal) {
    out.refusal = std::move(limited.refusal);
    out.refusal->set_header("X-Request-Id", out.request_id);
  }
  out.done = relayed(head, *identity, limited.policy ? limited.decision.remaining : -1);
  co_return out;
}

// What is noted of a relayed request once it ends: the head is gone by then, so what the log
// needs of it is taken now.
std::function<void(const http::Passage&)> Router::relayed(const http::Request& head, const auth::Identity& identity,
                                                          std::int64_t remaining) {
  const auto started = std::chrono::steady_clock::now();
  const std::string_view cls = method_class(head.method());
  auto* log = worker_.shared().access_log.get();
  if (!log || !log->enabled()) {
    return [this, started, cls](const http::Passage& p) {
      worker_.metrics().request("-relay", cls, p.status, "relay", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    };
  }
  return [this, started, cls, remaining, log, client = client_address(worker_.shared(), head), user = identity.is_guest() ? std::string() : identity.user,
          method = std::string(head.method_text()), target = std::string(head.target())](const http::Passage& p) {
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    worker_.metrics().request("-relay", cls, p.status, "relay", took);
    log::AccessRecord r;
    r.time = std::chrono::system_clock::now();
    r.request_id = p.request_id;
    r.client = client;
    r.user = user;
    r.method = method;
    r.target = target;
    r.rule = "-relay";
    r.status = p.status;
    r.bytes = p.bytes;
    r.total_ms = took * 1000;
    r.origin_ms = took * 1000;
    r.remaining = remaining;
    log->write(worker_.index(), r);
  };
}

asio::awaitable<http::Response> Router::health(const http::Request& req) {
  if (req.method() != http::Method::get && req.method() != http::Method::head) {
    auto r = http::error_response(405, "MethodNotAllowed", "Use GET");
    r.set_header("Allow", "GET, HEAD");
    co_return r;
  }
  if (req.path() == "/healthz") {
    auto r = http::json_response(200, "{\"status\":\"ok\"}");
    r.set_header("Cache-Control", "no-store");
    co_return r;
  }
  co_return co_await readiness(worker_);
}

asio::awaitable<boost::system::result<auth::IdentityPtr, auth::Failure>> Router::identify(const http::Request& req) {
  std::string_view authorization[2], cookies[8];
  const std::size_t na = req.headers(http::Request::Field::authorization, authorization, 2);
  const std::size_t nc = req.headers(http::Request::Field::cookie, cookies, 8);
  if (nc > 8) co_return auth::Failure{400, "BadRequest", "The request carries more than 8 Cookie header lines"};
  auto p = auth::presented(authorization, na, cookies, nc);
  if (!p) co_return p.error();
  if (p->authorization.empty() && p->sid.empty()) co_return worker_.verifier().guest();
  // Named: g++ 12 mishandles a temporary std::function inside a co_await expression.
  std::function<std::string()> client = [this, &req] { return client_address(worker_.shared(), req); };
  co_return co_await worker_.verifier().identify(p->authorization, p->sid, std::move(client));
}

http::Response Router::too_many_failures(const auth::Failure& f) {
  auto r = from_failure(f.status, f.exc_type, f.message);
  r.set_header("Retry-After", std::to_string(f.decision.retry_after_s));
  Limited{f.policy, f.decision, std::nullopt}.stamp(r);
  return r;
}

void Router::Limited::stamp(http::Response& r) const {
  if (!policy) return;
  r.set_header("RateLimit-Policy", limits::policy_field(*policy));
  r.set_header("RateLimit", limits::limit_field(*policy, decision));
}

asio::awaitable<Router::Limited> Router::limit(const config::Config& cfg, const http::Request& req, const rules::Rule* rule,
                                               const auth::Identity& identity) {
  Limited out;
  if (!cfg.limiting.enabled) co_return out;
  out.policy = policy_for(cfg, rule, identity, method_class(req.method()));
  std::string bucket = identity.is_guest() ? "ip:" + client_address(worker_.shared(), req) : "user:" + identity.user;
  if (rule && rule->rate_limit) bucket += ":rule:" + rule->name;
  out.decision = co_await worker_.limiter().check(bucket, *out.policy);
  worker_.metrics().limit(out.policy->name, decided_by(out.decision.source), out.decision.allowed);
  if (out.decision.allowed) co_return out;
  if (out.decision.source == limits::Decision::Source::closed) {
    auto r = refused(503, "ServiceUnavailable", "Rate limits cannot be checked (Redis unreachable) and limiting.fail_mode is closed");
    r.set_header("Retry-After", "1");
    out.refusal = std::move(r);
    co_return out;
  }
  auto r = refused(429, "TooManyRequestsError",
                   "Too many requests: the limit of " + out.policy->name + " requests is " + std::to_string(out.policy->limit) + " per " +
                       std::to_string(out.policy->window_s) + " s; retry in " + std::to_string(out.decision.retry_after_s) + " s");
  r.set_header("Retry-After", std::to_string(out.decision.retry_after_s));
  out.stamp(r);
  out.refusal = std::move(r);
  co_return out;
}

asio::awaitable<http::Response> Router::admitted(const http::Request& req, Matched& m, const std::string& path,
                                                 const boost::system::result<auth::IdentityPtr, auth::Failure>& identified,
                                                 Account& account) {
  if (!identified) co_return refused(identified.error());
  const auth::Identity& identity = **identified;
  if (!m.rule) {
    std::string message = "No route for ";
    message.append(req.method_text());
    message += ' ';
    message.append(path.substr(0, 200));
    co_return http::error_response(404, "DoesNotExistError", message);
  }
  const rules::Rule& rule = *m.rule;
  if (identity.is_guest() && !rule.allow_guest) {
    if (identity.session_expired) co_return refused(401, "SessionExpired", "Session expired");
    co_return refused(401, "AuthenticationError", "Login required: send a token, Basic or Bearer credential or a session cookie");
  }
  // The ERP's own permissions decide resources of the doctypes they cover; the rules file's
  // `permissions` the others. Then the rule's roles.
  const Live& live = *account.live;
  const Decided decided = co_await erp_permissions(*live.rules, rule, m.captures, identity);
  const ErpDecision& erp = *decided;
  if (erp.refusal) co_return refused(*erp.refusal);
  if (auto denied = permission_denied(*live.rules, rule, m.captures, identity, !erp.fingerprint.empty()))
    co_return refused(403, "PermissionError", *denied);
  if (rules::is_write(rule.kind) || (rule.kind == rules::OriginKind::http && rule.method != http::Method::get)) {
    account.served = cache::Served::write;
    if (rules::is_write(rule.kind)) co_return co_await write(live, rule, m.captures, identity, req, erp);
    co_return co_await write_via_erp(live, m.captures, req);
  }

  auto query = rules::parse_query(req.query());
  if (!query) co_return refused(query.error());
  auto params = rules::bind_params(rule, *query);
  if (!params) co_return refused(params.error());
  auto extra = rule.origin->key_extra(*query);
  if (!extra) co_return refused(extra.error());
  const auto& cfg = *live.cfg;
  const auto& category = cfg.cache.categories.at(rule.category);
  cache::Read read;
  read.key = rules::cache_key(cfg.site, rule, m.captures, *params, *extra, identity.user,
                              cfg.cache.share_by_permission ? std::string_view(erp.fingerprint) : std::string_view());
  read.life = {category.ttl.count() * 1000, category.stale_while_revalidate.count() * 1000, category.stale_if_error.count() * 1000};
  origin::Ask ask{std::move(m.captures), std::move(*params), std::move(*query), *identified, {}};
  if (rule.kind == rules::OriginKind::http) ask.sent = sent_as(req);
  account.origin_s = std::make_shared<double>(0);
  read.source = std::make_shared<RuleSource>(worker_, account.live, rule, std::move(ask), worker_.metrics(), account.origin_s);
  co_return co_await serve(std::move(read), req, account);
}

asio::awaitable<http::Response> Router::serve(cache::Read read, const http::Request& req, Account& account) {
  cache::Answer a = co_await worker_.read_through().serve(std::move(read));
  account.served = a.served;
  if (a.entry) co_return answer(a, req);
  // Timed out behind another request's fetch, with nothing stale to offer.
  auto r = from_failure(504, "GatewayTimeout", "The origin did not answer in time");
  r.set_header("Cache-Status", cache::cache_status(a));
  co_return r;
}

asio::awaitable<http::Response> Router::write(const Live& live, const rules::Rule& rule, const rules::Values& captures,
                                              const auth::Identity& identity, const http::Request& req, const ErpDecision& erp) {
  auto respond = [](http::Response r) {
    r.set_header("Cache-Status", cache::cache_status({.served = cache::Served::write}));
    return r;
  };
  const std::string* dt = captures.find("doctype");
  const rules::Doctype* doctype = dt ? live.rules->doctype(*dt) : nullptr;
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
  if (!catalog) co_return respond(http::error_response(catalog.error()));
  const std::optional<origin::Viewer> viewer = erp.viewer();
  auto written = co_await origin::write_doc(worker_.primary(), **catalog, *live.rules, *doctype, rule.kind, name, body,
                                            identity.user, identity.roles, worker_.config().site, viewer ? &*viewer : nullptr);
  if (!written) co_return respond(http::error_response(written.error()));

  // Committed. The answer waits behind the barrier: this instance, Redis and every live instance
  // have dropped the old answers (or run out of proof that they could still serve them). Then
  // the outbox row is done; whatever failed stays in the outbox for the relay.
  // Named: g++ 12 mishandles temporaries inside a co_await expression.
  invalidation::Event event{"outbox:" + std::to_string(written->outbox_id), written->tags, "pitstop", invalidation::utc_now(),
                            worker_.config().site};
  co_await settle(std::move(event), written->outbox_id);
  co_return respond(http::json_response(written->status, std::move(written->body)));
}

asio::awaitable<void> Router::settle(invalidation::Event event, std::uint64_t outbox_id) {
  const std::string id = event.id;
  const auto started = std::chrono::steady_clock::now();
  auto settled = co_await worker_.barrier().settle(std::move(event));
  worker_.metrics().write_barrier.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (!settled.delivery.ec && outbox_id != 0) {
    const std::string row = std::to_string(outbox_id);
    const db::Param p[] = {std::string_view(row)};
    auto done = co_await worker_.primary().execute("UPDATE `pitstop_outbox` SET `done` = 1, `done_at` = NOW(6) WHERE `id` = ?", p, false);
    // A deadlock with a concurrent writer or the relay (1213) or a lock wait timeout (1205) is
    // worth one more try; failing that, the relay delivers the row again, which is harmless.
    if (!done && (done.error().server_code == 1213 || done.error().server_code == 1205))
      done = co_await worker_.primary().execute("UPDATE `pitstop_outbox` SET `done` = 1, `done_at` = NOW(6) WHERE `id` = ?", p, false);
    if (!done) log::warn("outbox row ", row, " delivered but not marked done (", done.error().message, "); the relay will deliver it again");
  } else if (settled.delivery.ec) {
    log::warn("invalidation of ", id, " not delivered (", settled.delivery.ec.message(), ")",
              outbox_id ? "; the outbox relay retries it" : "; the ERP's triggers and the outbox relay are the safety net");
  }
  // An instance that stays silent costs every write the fence wait: say so, once in a while.
  if (!settled.unacknowledged.empty() && std::chrono::steady_clock::now() - last_fence_note_ > std::chrono::seconds(10)) {
    last_fence_note_ = std::chrono::steady_clock::now();
    log::warn(id, ": ", settled.unacknowledged.size(), " instance(s) did not acknowledge within ", worker_.barrier().fence_wait().count(),
              " ms and were counted as fenced (", settled.unacknowledged.front(), "); writes wait that long until its lease ends");
  }
}

// Forwarded with the client's own credentials, as the ERP would get it relayed; on a 2xx, the
// document's tags before and after are settled like a write of pitstop's own before the answer
// leaves. The ERP's triggers write their outbox rows too: the safety net if this fails.
asio::awaitable<http::Response> Router::write_via_erp(const Live& live, const rules::Values& captures, const http::Request& req) {
  auto respond = [](http::Response r) {
    r.set_header("Cache-Status", cache::cache_status({.served = cache::Served::write}));
    return r;
  };
  const std::string* dt = captures.find("doctype");
  const rules::Doctype* doctype = dt ? live.rules->doctype(*dt) : nullptr;
  if (!doctype) co_return respond(http::error_response(404, "DoesNotExistError", "DocType not found"));
  origin::WriteToErp w;
  w.method = std::string(req.method_text());
  w.target = std::string(req.target());
  for (const char* name : {"Host", "Authorization", "Cookie", "Content-Type", "Accept", "Accept-Language", "X-Frappe-CSRF-Token"})
    if (auto v = req.header(name); !v.empty()) w.headers.emplace_back(name, std::string(v));
  w.headers.emplace_back("X-Forwarded-For", client_address(worker_.shared(), req));
  w.body = std::string(req.body());
  if (const std::string* n = captures.find("name")) w.name = *n;
  auto written = co_await origin::forward_write(worker_, *doctype, w);
  if (!written) co_return respond(http::error_response(written.error()));
  if (!written->tags.empty()) {
    invalidation::Event event{"erp-write:" + std::to_string(++erp_writes_), std::move(written->tags), "pitstop", invalidation::utc_now(),
                              worker_.config().site};
    co_await settle(std::move(event), 0);
  }
  http::Response r;
  r.status = written->status;
  r.content_type = std::move(written->content_type);
  r.headers = std::move(written->headers);
  r.body = std::move(written->body);
  co_return respond(std::move(r));
}

}  // namespace pitstop::app
