#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <boost/throw_exception.hpp>
#include <stdexcept>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include <simdjson.h>

#include "proxy/auth/auth.hpp"
#include "proxy/auth/base64.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::auth {

namespace asio = boost::asio;
using boost::system::result;

bool Identity::has_role(std::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

namespace {

constexpr std::size_t kMaxCredential = 512;

Failure unauthorized(std::string message) { return {401, "AuthenticationError", std::move(message)}; }

// The database could not be asked: not a verdict on the credential, and never remembered.
Failure unavailable(const db::Error& e) { return {503, "ServiceUnavailable", "Cannot verify credentials: " + e.message}; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; });
}

// key:secret with exactly one colon, as Frappe's `api_key, api_secret = token.split(":")`.
std::optional<Credential> key_secret(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos || text.find(':', colon + 1) != std::string_view::npos) return std::nullopt;
  Credential c;
  c.kind = Kind::api_key;
  c.key = std::string(text.substr(0, colon));
  c.secret = std::string(text.substr(colon + 1));
  if (c.key.empty() || c.secret.empty() || !printable(c.key) || !printable(c.secret)) return std::nullopt;
  return c;
}

}  // namespace

std::string_view sid_cookie(std::string_view rest) {
  while (!rest.empty()) {
    auto semi = rest.find(';');
    std::string_view pair = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.substr(0, 4) != "sid=") continue;
    std::string_view sid = pair.substr(4);
    while (!sid.empty() && sid.back() == ' ') sid.remove_suffix(1);
    if (sid.size() >= 2 && sid.front() == '"' && sid.back() == '"') sid = sid.substr(1, sid.size() - 2);
    return sid;
  }
  return {};
}

namespace {
result<RequestCredentials, Failure> parse_with_sid(std::string_view authorization, std::string_view sid);
}

result<RequestCredentials, Failure> parse_credentials(std::string_view authorization, std::string_view cookie_header) {
  return parse_with_sid(authorization, sid_cookie(cookie_header));
}

result<Presented, Failure> presented(const std::string_view* authorization_lines, std::size_t authorization_count,
                                     const std::string_view* cookie_lines, std::size_t cookie_count) {
  Presented out;
  if (authorization_count > 1)
    return Failure{400, "InvalidAuthorizationHeader", "The request carries more than one Authorization header"};
  if (authorization_count == 1) out.authorization = authorization_lines[0];
  bool seen = false;
  for (std::size_t i = 0; i < cookie_count; ++i) {
    std::string_view rest = cookie_lines[i];
    while (!rest.empty()) {
      const auto semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      if (!pair.starts_with("sid=")) continue;
      const std::string_view sid = sid_cookie(pair);
      if (seen && sid != out.sid) return Failure{400, "BadRequest", "The request carries sid cookies with different values"};
      seen = true;
      out.sid = sid;
    }
  }
  return out;
}

namespace {
result<RequestCredentials, Failure> parse_with_sid(std::string_view authorization, std::string_view sid) {
  RequestCredentials out;
  if (!authorization.empty()) {
    if (authorization.size() > kMaxCredential)
      return Failure{400, "InvalidAuthorizationHeader", "The Authorization header is too long"};
    auto space = authorization.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 >= authorization.size() ||
        authorization.find(' ', space + 1) != std::string_view::npos)
      return Failure{400, "InvalidAuthorizationHeader",
                     "The Authorization header must be \"token <api_key>:<api_secret>\", \"Basic <base64>\" or \"Bearer <token>\""};
    const std::string type = lower(authorization.substr(0, space));
    const std::string_view value = authorization.substr(space + 1);
    if (type == "token") {
      auto c = key_secret(value);
      if (!c) return unauthorized("Invalid API key or secret");
      out.header = std::move(*c);
    } else if (type == "basic") {
      auto decoded = base64_decode(value, Base64::standard);
      if (!decoded)
        return Failure{400, "InvalidAuthorizationToken", "Failed to decode token, please provide a valid base64-encoded token."};
      auto c = key_secret(*decoded);
      if (!c) return unauthorized("Invalid API key or secret");
      out.header = std::move(*c);
    } else if (type == "bearer") {
      if (!printable(value)) return unauthorized("Invalid bearer token");
      out.header = Credential{Kind::bearer, std::string(value), {}};
    } else {
      return unauthorized("Unsupported authorization type \"" + std::string(authorization.substr(0, space)) + "\"");
    }
  }
  if (!sid.empty() && sid != "Guest") {
    if (sid.size() > kMaxCredential || !printable(sid)) return unauthorized("Invalid session cookie");
    out.session = Credential{Kind::session, std::string(sid), {}};
  }
  return out;
}
}  // namespace

namespace {
std::int64_t steady_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// The two buckets a failure is counted in; "" for a part the request did not present.
std::array<std::string, 2> failure_buckets(std::string_view client, std::string_view api_key) {
  return {client.empty() ? std::string() : "authfail:ip:" + std::string(client),
          api_key.empty() ? std::string() : "authfail:key:" + std::string(api_key)};
}
}  // namespace

std::optional<Failure> FailureBudget::refuse(std::string_view client, std::string_view api_key) const {
  const std::int64_t now = steady_us();
  for (const std::string& bucket : failure_buckets(client, api_key)) {
    if (bucket.empty()) continue;
    const limits::Decision d = local_.peek(bucket, policy_, now);
    if (d.allowed) continue;
    Failure f{429, "TooManyRequestsError",
              "Too many failed authentications from this client or for this key: the limit is " + std::to_string(policy_.limit) +
                  " per " + std::to_string(policy_.window_s) + " s; retry in " + std::to_string(d.retry_after_s) + " s"};
    f.policy = policy_;
    f.decision = d;
    return f;
  }
  return std::nullopt;
}

void FailureBudget::failed(std::string_view client, std::string_view api_key) {
  const std::int64_t now = steady_us();
  for (const std::string& bucket : failure_buckets(client, api_key))
    if (!bucket.empty()) local_.decide(bucket, policy_, now);
}

Verifier::Verifier(db::Pool& pool, Settings settings, FailureBudget* failures)
    : pool_(pool), settings_(std::move(settings)), failures_(failures), mac_(nullptr, [](evp_mac_ctx_st* c) { EVP_MAC_CTX_free(c); }) {
  fernet_ = Fernet::from_key(settings_.encryption_key);
  RAND_bytes(hash_key_, sizeof hash_key_);
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
  if (mac) {
    mac_.reset(EVP_MAC_CTX_new(mac));
    EVP_MAC_free(mac);  // the context keeps its own reference
  }
  guest_ = std::make_shared<const Identity>();
}

void Verifier::clear_cache() {
  cache_.clear();
  order_.clear();
}

Verifier::Key Verifier::key_of(std::string_view authorization, std::string_view sid) const {
  unsigned char zero = 0;
  unsigned char out[16] = {};
  std::size_t len = 0;
  std::size_t size = sizeof out;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_END};
  bool ok = mac_ && EVP_MAC_init(mac_.get(), hash_key_, sizeof hash_key_, params) == 1 &&
            EVP_MAC_update(mac_.get(), reinterpret_cast<const unsigned char*>(authorization.data()), authorization.size()) == 1 &&
            EVP_MAC_update(mac_.get(), &zero, 1) == 1 &&
            EVP_MAC_update(mac_.get(), reinterpret_cast<const unsigned char*>(sid.data()), sid.size()) == 1 &&
            EVP_MAC_final(mac_.get(), out, &len, sizeof out) == 1;
  if (!ok) {
    // Without SipHash (an OpenSSL built without it), the slower HMAC-SHA256.
    std::string material(authorization);
    material.push_back('\0');
    material.append(sid);
    unsigned char mac[32];
    unsigned int hlen = 0;
    HMAC(EVP_sha256(), hash_key_, sizeof hash_key_, reinterpret_cast<const unsigned char*>(material.data()), material.size(), mac, &hlen);
    OPENSSL_cleanse(material.data(), material.size());
    std::memcpy(out, mac, 16);
  }
  Key k;
  std::memcpy(&k.a, out, 8);
  std::memcpy(&k.b, out + 8, 8);
  return k;
}

asio::awaitable<result<IdentityPtr, Failure>> Verifier::identify(std::string_view authorization, std::string_view sid,
                                                                std::function<std::string()> client) {
  if (authorization.empty() && (sid.empty() || sid == "Guest")) co_return guest_;
  const Key key = key_of(authorization, sid);
  const auto now = std::chrono::steady_clock::now();
  if (auto it = cache_.find(key); it != cache_.end() && it->second.expires > now) {
    ++stats_.cache_hits;
    if (!it->second.identity) co_return it->second.failure;
    // In the last quarter of its life, a verified identity is checked again in the background,
    // so that a client in steady use never waits for the database (which put a verification in
    // about one request in a hundred at 25 users); a revocation still counts within the TTL.
    // Taken before the check starts: co_spawn may run it inline up to a verdict that replaces
    // the entry (a revocation) before this request is answered with what was verified.
    IdentityPtr identity = it->second.identity;
    if (now >= it->second.refresh_after && !it->second.refreshing) {
      it->second.refreshing = true;
      asio::co_spawn(co_await asio::this_coro::executor, refresh(key, std::string(authorization), std::string(sid)), asio::detached);
    }
    co_return identity;
  }
  const std::string address = client ? client() : std::string();
  auto r = co_await resolve(authorization, sid, address);
  remember(key, r, now);
  co_return r;
}

IdentityPtr Verifier::remembered(std::string_view authorization, std::string_view sid) const {
  if (authorization.empty() && (sid.empty() || sid == "Guest")) return nullptr;
  auto it = cache_.find(key_of(authorization, sid));
  if (it == cache_.end() || it->second.expires <= std::chrono::steady_clock::now()) return nullptr;
  return it->second.identity;
}

asio::awaitable<void> Verifier::refresh(Key key, std::string authorization, std::string sid) {
  const auto now = std::chrono::steady_clock::now();
  // Already verified once: a background check is not a guess and spends no budget.
  auto r = co_await resolve(authorization, sid, {});
  remember(key, r, now);
  // An outage leaves the identity to expire at its time; the next use after that asks again.
  if (auto it = cache_.find(key); it != cache_.end()) it->second.refreshing = false;
}

void Verifier::remember(const Key& key, const result<IdentityPtr, Failure>& r, std::chrono::steady_clock::time_point now) {
  // Only answers from the database are remembered; an outage is not a verdict.
  if (r || r.error().status == 401) {
    auto [it, fresh] = cache_.try_emplace(key);
    if (fresh) {
      order_.push_back(key);
      if (cache_.size() > settings_.cache_entries) {
        cache_.erase(order_.front());
        order_.pop_front();
      }
    }
    if (r) {
      it->second.identity = *r;
      it->second.expires = now + settings_.identity_ttl;
      it->second.refresh_after = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(settings_.identity_ttl) * 3 / 4;
    } else {
      it->second.identity = nullptr;
      it->second.failure = r.error();
      it->second.expires = now + settings_.failure_ttl;
    }
  }
}

asio::awaitable<result<IdentityPtr, Failure>> Verifier::resolve(std::string_view authorization, std::string_view sid,
                                                               std::string_view client) {
  auto parsed = parse_with_sid(authorization, sid);
  if (!parsed) co_return parsed.error();
  auto creds = std::move(*parsed);
  const std::string_view api_key = creds.header && creds.header->kind == Kind::api_key ? std::string_view(creds.header->key) : "";
  const bool budgeted = failures_ && !client.empty();
  if (budgeted) {
    if (auto refusal = failures_->refuse(client, api_key)) {
      ++stats_.budget_refusals;
      co_return *refusal;
    }
  }
  // Not a conditional expression: g++ 12 miscompiles co_await inside one.
  result<IdentityPtr, Failure> r = guest_;
  if (settings_.from_upstream) r = co_await ask_erp(creds, authorization, sid);
  else r = co_await decide(creds);
  const bool failed = r ? (*r)->session_expired : r.error().status == 401;
  if (budgeted && failed) failures_->failed(client, api_key);
  co_return r;
}

// Frappe's order (frappe/auth.py, sessions.py): the sid resumes a session or, unknown, leaves a
// Guest; then an API key or secret that does not match is an AuthenticationError even beside a
// live session, a valid one only names the user when the session did not; a valid Bearer token
// names the user whatever the session, an invalid one fails only without a live session.
asio::awaitable<result<IdentityPtr, Failure>> Verifier::decide(const RequestCredentials& creds) {
  std::optional<Identity> session;
  if (creds.session) {
    ++stats_.lookups;
    auto r = co_await verify(*creds.session);
    if (r) session = std::move(*r);
    else if (r.error().status != 401) co_return r.error();
  }
  if (creds.header) {
    ++stats_.lookups;
    auto r = co_await verify(*creds.header);
    if (!r && r.error().status != 401) co_return r.error();
    if (creds.header->kind == Kind::bearer && r) co_return std::make_shared<const Identity>(std::move(*r));
    if (!session) {
      if (!r) co_return r.error();
      co_return std::make_shared<const Identity>(std::move(*r));
    }
    if (!r && creds.header->kind == Kind::api_key) co_return r.error();
  }
  if (session) co_return std::make_shared<const Identity>(std::move(*session));
  if (creds.session) {
    // An expired or unknown session and nothing else: a guest, told why if it matters.
    auto guest = std::make_shared<Identity>();
    guest->session_expired = true;
    co_return IdentityPtr(std::move(guest));
  }
  co_return guest_;
}

namespace {

// The `message` of a Frappe method's JSON answer: a string, or the strings of a list.
std::optional<std::vector<std::string>> message_strings(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(body).get(root)) return std::nullopt;
  simdjson::dom::element message;
  if (root["message"].get(message)) return std::nullopt;
  std::vector<std::string> out;
  std::string_view one;
  if (!message.get(one)) return std::vector<std::string>{std::string(one)};
  simdjson::dom::array list;
  if (message.get(list)) return std::nullopt;
  for (auto item : list)
    if (!item.get(one)) out.emplace_back(one);
  return out;
}

Failure erp_unavailable(const http::Problem& p) { return {503, "ServiceUnavailable", "Cannot verify credentials: " + p.message}; }

}  // namespace

// Asks the ERP, with the request's own credentials, who it is and what roles it holds. A refusal
// is the ERP's verdict (remembered like one from the tables); an ERP that cannot answer is not.
asio::awaitable<result<IdentityPtr, Failure>> Verifier::ask_erp(const RequestCredentials& creds, std::string_view authorization,
                                                               std::string_view sid) {
  if (!upstream_) co_return Failure{503, "ServiceUnavailable", "auth.source is \"upstream\" but there is no upstream"};
  http::OutgoingRequest who{"/api/method/frappe.auth.get_logged_user", {{"Accept", "application/json"}}};
  if (!authorization.empty()) who.headers.emplace_back("Authorization", std::string(authorization));
  if (!sid.empty()) who.headers.emplace_back("Cookie", "sid=" + std::string(sid));
  ++stats_.lookups;
  auto answer = co_await upstream_->send(who, 64 * 1024);
  if (!answer) co_return erp_unavailable(answer.error());
  if (answer->status == 401 || answer->status == 403) {
    // Only a session, and the ERP does not know it: a guest whose session expired, as Frappe has it.
    if (!creds.header) {
      auto guest = std::make_shared<Identity>();
      guest->session_expired = true;
      co_return IdentityPtr(std::move(guest));
    }
    co_return unauthorized("The ERP does not accept these credentials");
  }
  auto user = answer->status == 200 ? message_strings(answer->body) : std::nullopt;
  if (!user || user->size() != 1) co_return erp_unavailable({502, "BadGateway", "the ERP answered get_logged_user with " + std::to_string(answer->status)});
  if ((*user)[0] == "Guest") co_return guest_;
  http::OutgoingRequest roles_of = who;
  roles_of.target = "/api/method/frappe.core.doctype.user.user.get_roles";
  auto roles = co_await upstream_->send(roles_of, 256 * 1024);
  if (!roles) co_return erp_unavailable(roles.error());
  auto names = roles->status == 200 ? message_strings(roles->body) : std::nullopt;
  if (!names) co_return erp_unavailable({502, "BadGateway", "the ERP answered get_roles with " + std::to_string(roles->status)});
  Identity id;
  id.kind = creds.header ? creds.header->kind : Kind::session;
  id.user = std::move((*user)[0]);
  id.roles = std::move(*names);
  co_return std::make_shared<const Identity>(std::move(id));
}

asio::awaitable<result<std::vector<std::string>, Failure>> Verifier::roles_of(const std::string& user) {
  const db::Param p[] = {std::string_view(user)};
  auto r = co_await pool_.execute("SELECT `role` FROM `tabHas Role` WHERE `parent` = ? AND `parenttype` = 'User' ORDER BY `idx`", p);
  if (!r) co_return unavailable(r.error());
  std::vector<std::string> roles;
  for (const auto& row : r->rows)
    if (row[0]) roles.push_back(*row[0]);
  co_return roles;
}

asio::awaitable<result<Identity, Failure>> Verifier::verify(const Credential& c) {
  Identity id;
  id.kind = c.kind;
  if (c.kind == Kind::api_key) {
    const db::Param p[] = {std::string_view(c.key)};
    auto r = co_await pool_.execute(
        "SELECT u.`name`, u.`enabled`, a.`password` FROM `tabUser` u "
        "LEFT JOIN `__Auth` a ON a.`doctype` = 'User' AND a.`name` = u.`name` AND a.`fieldname` = 'api_secret' "
        "AND a.`encrypted` = 1 WHERE u.`api_key` = ?",
        p);
    if (!r) co_return unavailable(r.error());
    if (r->rows.empty() || !r->rows[0][0]) co_return unauthorized("Invalid API key or secret");
    const auto& row = r->rows[0];
    if (!row[1] || *row[1] != "1") co_return unauthorized("User " + *row[0] + " is disabled");
    if (!row[2]) co_return unauthorized("Invalid API key or secret");
    if (!fernet_) {
      log::error("auth.encryption_key is not a valid Fernet key: API secrets cannot be checked");
      co_return unauthorized("Invalid API key or secret");
    }
    auto secret = fernet_->decrypt(*row[2]);
    if (!secret) {
      log::warn("the api_secret of ", *row[0], " does not decrypt with auth.encryption_key (is it the site's key?)");
      co_return unauthorized("Invalid API key or secret");
    }
    const bool same = secret->size() == c.secret.size() && CRYPTO_memcmp(secret->data(), c.secret.data(), c.secret.size()) == 0;
    OPENSSL_cleanse(secret->data(), secret->size());
    if (!same) co_return unauthorized("Invalid API key or secret");
    id.user = *row[0];
  } else if (c.kind == Kind::bearer) {
    const db::Param p[] = {std::string_view(c.key)};
    auto r = co_await pool_.execute(
        "SELECT t.`user`, t.`status`, t.`expiration_time` > NOW(6), u.`enabled` FROM `tabOAuth Bearer Token` t "
        "LEFT JOIN `tabUser` u ON u.`name` = t.`user` WHERE t.`access_token` = ?",
        p);
    if (!r) co_return unavailable(r.error());
    if (r->rows.empty()) co_return unauthorized("Invalid bearer token");
    const auto& row = r->rows[0];
    if (row[1] && *row[1] == "Revoked") co_return unauthorized("The bearer token was revoked");
    if (!row[2] || *row[2] != "1") co_return unauthorized("The bearer token has expired");
    if (!row[0] || row[0]->empty() || !row[3] || *row[3] != "1") co_return unauthorized("Invalid bearer token");
    id.user = *row[0];
  } else {
    const db::Param p[] = {std::string_view(c.key), std::int64_t{settings_.session_expiry.count()}};
    auto r = co_await pool_.execute(
        "SELECT s.`user`, u.`enabled` FROM `tabSessions` s LEFT JOIN `tabUser` u ON u.`name` = s.`user` "
        "WHERE s.`sid` = ? AND s.`lastupdate` > NOW(6) - INTERVAL ? SECOND "
        "AND (s.`status` IS NULL OR s.`status` = 'Active') ORDER BY s.`lastupdate` DESC LIMIT 1",
        p);
    if (!r) co_return unavailable(r.error());
    if (r->rows.empty() || !r->rows[0][0] || *r->rows[0][0] == "Guest") co_return Failure{401, "SessionExpired", "Session expired"};
    if (!r->rows[0][1] || *r->rows[0][1] != "1") co_return unauthorized("User " + *r->rows[0][0] + " is disabled");
    id.user = *r->rows[0][0];
  }
  auto roles = co_await roles_of(id.user);
  if (!roles) co_return roles.error();
  id.roles = std::move(*roles);
  co_return id;
}

}  // namespace pitstop::auth
