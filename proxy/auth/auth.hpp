#pragma once
// Frappe identities: `Authorization: token key:secret`, `Basic base64(key:secret)`,
// `Bearer <oauth token>` and the `sid` session cookie, verified against the ERP's own tables
// (tabUser + __Auth with Fernet-encrypted secrets, tabOAuth Bearer Token, tabSessions) so that
// existing keys and sessions keep working. Verified identities are cached briefly per worker,
// keyed by a keyed hash of the credential, never by the credential itself.
#include <chrono>
#include <cstdint>
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

// A refusal, answered in Frappe's error shape.
struct Failure {
  unsigned status = 401;
  std::string exc_type = "AuthenticationError";
  std::string message;
};
[[noreturn]] void throw_exception_from_error(const Failure& f, const boost::source_location& loc);

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
};

// One per worker: not thread-safe.
class Verifier {
 public:
  Verifier(db::Pool& pool, Settings settings);

  // The identity of a request: a verified user, or Guest when it carries no credential.
  boost::asio::awaitable<boost::system::result<Identity, Failure>> identify(std::string_view authorization,
                                                                            std::string_view cookie_header);

  struct Stats {
    std::uint64_t lookups = 0;    // database lookups
    std::uint64_t cache_hits = 0;
  };
  const Stats& stats() const { return stats_; }
  void clear_cache();

 private:
  boost::asio::awaitable<boost::system::result<Identity, Failure>> verify(const Credential& c);
  boost::asio::awaitable<boost::system::result<std::vector<std::string>, Failure>> roles_of(const std::string& user);
  std::string cache_key(const Credential& c) const;

  struct Cached {
    std::optional<Identity> identity;
    Failure failure;
    std::chrono::steady_clock::time_point expires;
    std::list<std::string>::iterator lru;
  };
  db::Pool& pool_;
  Settings settings_;
  std::optional<Fernet> fernet_;
  unsigned char hash_key_[32];  // per process: cache keys cannot be matched to credentials offline
  std::unordered_map<std::string, Cached> cache_;
  std::list<std::string> lru_;
  Stats stats_;
};

}  // namespace pitstop::auth
