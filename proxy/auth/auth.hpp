#pragma once
// Frappe identities: `Authorization: token key:secret`, `Basic base64(key:secret)`,
// `Bearer <oauth token>` and the `sid` session cookie, verified against the ERP's own tables
// (tabUser + __Auth with Fernet-encrypted secrets, tabOAuth Bearer Token, tabSessions) so that
// existing keys and sessions keep working. Verified identities are cached briefly per worker,
// keyed by a keyed hash of the credential, never by the credential itself.
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/config/config.hpp"
#include "proxy/db/db.hpp"
#include "proxy/http/http.hpp"
#include "proxy/limits/limits.hpp"

struct evp_mac_ctx_st;  // OpenSSL's EVP_MAC_CTX

namespace pitstop::auth {

enum class Kind { guest, api_key, bearer, session };

struct Identity {
  Kind kind = Kind::guest;
  std::string user = "Guest";
  std::vector<std::string> roles;  // from tabHas Role
  bool session_expired = false;    // a Guest because its sid cookie named no live session
  bool is_guest() const { return kind == Kind::guest; }
  bool has_role(std::string_view role) const;
};

// A refusal: the problem, and for a 429 for too many failed verifications the budget that
// refused it and its verdict (the answer carries its RateLimit fields).
struct Failure : http::Problem {
  Failure() : http::Problem{401, "AuthenticationError", {}} {}
  Failure(http::Problem p) : http::Problem(std::move(p)) {}  // NOLINT: a problem is a failure
  Failure(unsigned status, std::string exc_type, std::string message) : http::Problem{status, std::move(exc_type), std::move(message)} {}
  std::optional<limits::Policy> policy;
  limits::Decision decision;
};

// What the request carries, before any database lookup. Malformed headers are a 400 Failure.
struct Credential {
  Kind kind = Kind::guest;
  std::string key;     // api key, bearer token or sid
  std::string secret;  // api secret
};
struct RequestCredentials {
  std::optional<Credential> header;   // from Authorization
  std::optional<Credential> session;  // from the sid cookie (not "Guest")
};
boost::system::result<RequestCredentials, Failure> parse_credentials(std::string_view authorization,
                                                                    std::string_view cookie_header);

// Fernet (https://github.com/fernet/spec), as Frappe encrypts secrets with the site's
// encryption_key. Decrypt verifies the HMAC in constant time before decrypting.
class Fernet {
 public:
  // `key` is the url-safe base64 text of 32 bytes (Frappe's site_config encryption_key).
  static std::optional<Fernet> from_key(std::string_view key);
  std::optional<std::string> decrypt(std::string_view token) const;
  std::string encrypt(std::string_view plain) const;  // for tests and the CLI

 private:
  unsigned char signing_[16];
  unsigned char encryption_[16];
};

struct Settings {
  std::string encryption_key;
  std::chrono::seconds session_expiry{6 * 3600};
  std::chrono::seconds identity_ttl{30};
  std::chrono::seconds failure_ttl{5};
  std::size_t cache_entries = 10000;
  bool from_upstream = false;  // auth.source "upstream": the ERP says who a credential is
};

using IdentityPtr = std::shared_ptr<const Identity>;

// The value of the sid cookie in a Cookie header ("" when absent); no copies.
std::string_view sid_cookie(std::string_view cookie_header);

// The credentials a request presents: its Authorization header and its sid cookie, each once. A
// second Authorization line, or sid cookies with different values (in one Cookie line or over
// several), are a 400: a front proxy and the ERP behind it must never pick different ones.
struct Presented {
  std::string_view authorization;
  std::string_view sid;  // "" when absent
};
boost::system::result<Presented, Failure> presented(const std::string_view* authorization_lines, std::size_t authorization_count,
                                                    const std::string_view* cookie_lines, std::size_t cookie_count);

// Failed verifications, counted per client address and per API key over an instance's workers
// (one GCRA bucket each in the instance's local limiter: no Redis round trip). A credential that
// would cost a database lookup is refused with 429 once either bucket is spent; credentials
// already verified are not affected.
class FailureBudget {
 public:
  FailureBudget(limits::LocalLimiter& local, limits::Policy policy) : local_(local), policy_(std::move(policy)) {}
  // The refusal, when `client` or `api_key` ("" for none) has failed too often.
  std::optional<Failure> refuse(std::string_view client, std::string_view api_key) const;
  void failed(std::string_view client, std::string_view api_key);
  const limits::Policy& policy() const { return policy_; }

 private:
  limits::LocalLimiter& local_;
  limits::Policy policy_;
};

// One per worker: not thread-safe.
class Verifier {
 public:
  // `failures` (optional) limits how often a client may present credentials that fail.
  Verifier(db::Pool& pool, Settings settings, FailureBudget* failures = nullptr);
  // The ERP to ask when settings.from_upstream (set before the first request).
  void set_upstream(http::Upstream* upstream) { upstream_ = upstream; }

  // The identity of a request, as Frappe decides it: a live session is the user, an API key
  // beside it must still be valid (a Bearer token beside it wins); without a live session the
  // Authorization header decides; an unknown sid alone is a Guest told that its session
  // expired; nothing is a Guest. A request whose credentials were verified within
  // auth.identity_ttl costs one keyed hash. `client` gives the client address, for the failure
  // budget; it is asked only when the credential is not remembered (formatting an address costs
  // more than the hit).
  boost::asio::awaitable<boost::system::result<IdentityPtr, Failure>> identify(std::string_view authorization, std::string_view sid,
                                                                               std::function<std::string()> client = {});

  // The identity verified for these credentials within auth.identity_ttl, without asking the
  // database: nullptr when there is none (never verified, refused, or expired).
  IdentityPtr remembered(std::string_view authorization, std::string_view sid) const;

  struct Stats {
    std::uint64_t lookups = 0;    // database lookups
    std::uint64_t cache_hits = 0;
    std::uint64_t budget_refusals = 0;  // 429s for too many failures
  };
  const Stats& stats() const { return stats_; }
  const IdentityPtr& guest() const { return guest_; }
  void clear_cache();

 private:
  boost::asio::awaitable<boost::system::result<Identity, Failure>> verify(const Credential& c);
  boost::asio::awaitable<boost::system::result<std::vector<std::string>, Failure>> roles_of(const std::string& user);
  boost::asio::awaitable<boost::system::result<IdentityPtr, Failure>> decide(const RequestCredentials& creds);
  // auth.source "upstream": the ERP's own answer for these credentials.
  boost::asio::awaitable<boost::system::result<IdentityPtr, Failure>> ask_erp(const RequestCredentials& creds, std::string_view authorization,
                                                                             std::string_view sid);
  boost::asio::awaitable<boost::system::result<IdentityPtr, Failure>> resolve(std::string_view authorization, std::string_view sid,
                                                                              std::string_view client);

  // SipHash-128 of what the request carries (the Authorization header and the sid) under a random
  // per-process key: the cache never holds a credential, keys cannot be matched to credentials
  // offline, and a lookup costs ~70 ns, not an HMAC-SHA256's microsecond.
  struct Key {
    std::uint64_t a = 0, b = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept { return static_cast<std::size_t>(k.a); }
  };
  Key key_of(std::string_view authorization, std::string_view sid) const;

  struct Cached {
    IdentityPtr identity;
    Failure failure;
    std::chrono::steady_clock::time_point expires;
    std::chrono::steady_clock::time_point refresh_after;  // checked again in the background from here
    bool refreshing = false;
  };
  boost::asio::awaitable<void> refresh(Key key, std::string authorization, std::string sid);
  void remember(const Key& key, const boost::system::result<IdentityPtr, Failure>& r, std::chrono::steady_clock::time_point now);
  db::Pool& pool_;
  http::Upstream* upstream_ = nullptr;
  Settings settings_;
  FailureBudget* failures_;
  std::optional<Fernet> fernet_;
  unsigned char hash_key_[16];
  std::unique_ptr<::evp_mac_ctx_st, void (*)(::evp_mac_ctx_st*)> mac_;
  std::unordered_map<Key, Cached, KeyHash> cache_;
  std::list<Key> order_;  // insertion order: the oldest goes first when full
  IdentityPtr guest_;
  Stats stats_;
};

}  // namespace pitstop::auth
