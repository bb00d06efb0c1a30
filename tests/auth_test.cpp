#include <gtest/gtest.h>

#include <thread>

#include "proxy/auth/auth.hpp"
#include "proxy/auth/base64.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
using namespace pitstop;
using namespace std::chrono_literals;
using auth::Fernet;

TEST(Fernet, DecryptsTheSpecificationVector) {
  // https://github.com/fernet/spec/blob/master/generate.json
  auto f = Fernet::from_key("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=");
  ASSERT_TRUE(f);
  auto plain = f->decrypt("gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==");
  ASSERT_TRUE(plain);
  EXPECT_EQ(*plain, "hello");
}

TEST(Fernet, RoundTripsAndRejectsTampering) {
  auto f = Fernet::from_key("YUi34AfWLLOdKY75H0zfFER7QQm03vRh45OBhxjdxjk=");
  ASSERT_TRUE(f);
  for (std::string secret : {std::string("s"), std::string("a1b2c3d4e5f6"), std::string(1000, 'x'), std::string("ünï\0code", 9)}) {
    auto token = f->encrypt(secret);
    auto back = f->decrypt(token);
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, secret);
    // Any flipped character breaks the MAC (or the encoding).
    for (std::size_t i = 0; i + 2 < token.size(); i += 7) {
      std::string bad = token;
      bad[i] = bad[i] == 'A' ? 'B' : 'A';
      EXPECT_FALSE(f->decrypt(bad)) << i;
    }
  }
  auto other = Fernet::from_key("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=");
  EXPECT_FALSE(other->decrypt(f->encrypt("secret")));
  for (const char* junk : {"", "gAAAA", "not base64!", "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ"})
    EXPECT_FALSE(f->decrypt(junk));
  EXPECT_FALSE(Fernet::from_key("short"));
  EXPECT_FALSE(Fernet::from_key("YUi34AfWLLOdKY75H0zfFER7QQm03vRh45OBhxjdxj="));
}

TEST(Credentials, ParsesFrappesForms) {
  auto token = auth::parse_credentials("token abc:def", "");
  ASSERT_TRUE(token);
  EXPECT_EQ(token->header->kind, auth::Kind::api_key);
  EXPECT_EQ(token->header->key, "abc");
  EXPECT_EQ(token->header->secret, "def");
  auto basic = auth::parse_credentials("Basic " + auth::base64_encode("abc:def", auth::Base64::standard), "");
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->header->key, "abc");
  EXPECT_EQ(basic->header->secret, "def");
  auto bearer = auth::parse_credentials("Bearer tok123", "");
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->header->kind, auth::Kind::bearer);
  auto cookie = auth::parse_credentials("", "full_name=A%20B; sid=abc123; system_user=yes");
  ASSERT_TRUE(cookie);
  EXPECT_EQ(cookie->session->key, "abc123");
  EXPECT_FALSE(auth::parse_credentials("", "sid=Guest")->session);
  EXPECT_FALSE(auth::parse_credentials("", "")->header);
}

TEST(Credentials, MalformedHeadersAre400AndBadOnes401) {
  struct Case {
    std::string header;
    unsigned status;
    const char* exc_type;
  };
  const Case cases[] = {
      {"token", 400, "InvalidAuthorizationHeader"},
      {"token a:b extra", 400, "InvalidAuthorizationHeader"},
      {" token a:b", 400, "InvalidAuthorizationHeader"},
      {"Basic %%%notbase64", 400, "InvalidAuthorizationToken"},
      {"Basic YWJj", 401, "AuthenticationError"},  // "abc": no colon
      {"token abc", 401, "AuthenticationError"},
      {"token a:b:c", 401, "AuthenticationError"},
      {"token :b", 401, "AuthenticationError"},
      {"Digest abc", 401, "AuthenticationError"},
      {"token " + std::string(1000, 'a') + ":b", 400, "InvalidAuthorizationHeader"},
  };
  for (const auto& c : cases) {
    auto r = auth::parse_credentials(c.header, "");
    ASSERT_FALSE(r) << c.header;
    EXPECT_EQ(r.error().status, c.status) << c.header;
    EXPECT_EQ(r.error().exc_type, c.exc_type) << c.header;
  }
}

namespace {

// Test users with every credential form, created in the service database and removed after.
class Verifier : public ::testing::Test {
 protected:
  static constexpr const char* kKey = "YUi34AfWLLOdKY75H0zfFER7QQm03vRh45OBhxjdxjk=";

  void SetUp() override {
    prefix_ = "authtest" + std::to_string(::getpid());
    pool_ = std::make_unique<db::Pool>(ioc_, test::service_config().mariadb.primary, 2, 2000ms, 5000ms, 2000ms);
    auto f = *Fernet::from_key(kKey);
    sql({"DELETE FROM `tabUser` WHERE name LIKE '" + prefix_ + "%'",
         "INSERT INTO `tabUser` (name, enabled, api_key) VALUES ('" + user("alice") + "', 1, '" + prefix_ + "-ka'), ('" +
             user("bob") + "', 0, '" + prefix_ + "-kb'), ('" + user("carol") + "', 1, '" + prefix_ + "-kc')",
         "INSERT INTO `__Auth` (doctype, name, fieldname, password, encrypted) VALUES ('User', '" + user("alice") +
             "', 'api_secret', '" + f.encrypt("alice-secret") + "', 1), ('User', '" + user("bob") + "', 'api_secret', '" +
             f.encrypt("bob-secret") + "', 1), ('User', '" + user("carol") + "', 'api_secret', 'not-a-fernet-token', 1)",
         "INSERT INTO `tabHas Role` (name, role, parent, parenttype, parentfield, idx) VALUES ('" + prefix_ + "-r1', 'Workshop Manager', '" +
             user("alice") + "', 'User', 'roles', 1), ('" + prefix_ + "-r2', 'All', '" + user("alice") + "', 'User', 'roles', 2)",
         "INSERT INTO `tabSessions` (user, sid, sessiondata, lastupdate, status) VALUES ('" + user("alice") + "', '" + prefix_ +
             "-live', '{}', NOW(6), 'Active'), ('" + user("alice") + "', '" + prefix_ + "-old', '{}', NOW(6) - INTERVAL 7 HOUR, 'Active')",
         "INSERT INTO `tabOAuth Bearer Token` (name, user, access_token, expiration_time, status, scopes) VALUES ('" + prefix_ +
             "-t1', '" + user("alice") + "', '" + prefix_ + "-live', NOW(6) + INTERVAL 1 HOUR, 'Active', 'all'), ('" + prefix_ +
             "-t2', '" + user("alice") + "', '" + prefix_ + "-expired', NOW(6) - INTERVAL 1 SECOND, 'Active', 'all'), ('" + prefix_ +
             "-t3', '" + user("alice") + "', '" + prefix_ + "-revoked', NOW(6) + INTERVAL 1 HOUR, 'Revoked', 'all')"});
    auth::Settings s;
    s.encryption_key = kKey;
    verifier_ = std::make_unique<auth::Verifier>(*pool_, s);
  }

  void TearDown() override {
    sql({"DELETE FROM `tabUser` WHERE name LIKE '" + prefix_ + "%'", "DELETE FROM `__Auth` WHERE name LIKE '" + prefix_ + "%'",
         "DELETE FROM `tabHas Role` WHERE parent LIKE '" + prefix_ + "%'", "DELETE FROM `tabSessions` WHERE user LIKE '" + prefix_ + "%'",
         "DELETE FROM `tabOAuth Bearer Token` WHERE name LIKE '" + prefix_ + "%'"});
  }

  std::string user(const std::string& who) const { return prefix_ + "-" + who + "@example.com"; }

  void sql(std::vector<std::string> statements) {
    test::run(ioc_, [](db::Pool& p, std::vector<std::string> s) -> asio::awaitable<void> {
      for (const auto& q : s) {
        auto r = co_await p.execute(q, {}, false);
        EXPECT_TRUE(r) << q << ": " << (r ? "" : r.error().message);
      }
    }(*pool_, std::move(statements)));
  }

  boost::system::result<auth::Identity, auth::Failure> identify(const std::string& authorization, const std::string& cookie = "") {
    boost::system::result<auth::Identity, auth::Failure> out = auth::Failure{};
    test::run(ioc_, [](auth::Verifier& v, std::string a, std::string c,
                       boost::system::result<auth::Identity, auth::Failure>& o) -> asio::awaitable<void> {
      auto r = co_await v.identify(a, auth::sid_cookie(c));
      if (r) o = **r;
      else o = r.error();
    }(*verifier_, authorization, cookie, out));
    return out;
  }

  asio::io_context ioc_{1};
  std::string prefix_;
  std::unique_ptr<db::Pool> pool_;
  std::unique_ptr<auth::Verifier> verifier_;
};

}  // namespace

TEST_F(Verifier, ApiKeyAsTokenAndBasic) {
  auto r = identify("token " + prefix_ + "-ka:alice-secret");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->user, user("alice"));
  EXPECT_EQ(r->kind, auth::Kind::api_key);
  EXPECT_TRUE(r->has_role("Workshop Manager"));
  EXPECT_TRUE(r->has_role("All"));
  auto b = identify("Basic " + auth::base64_encode(prefix_ + "-ka:alice-secret", auth::Base64::standard));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->user, user("alice"));
}

TEST_F(Verifier, WrongSecretUnknownKeyDisabledUserAndUndecryptableSecretAre401) {
  for (const std::string& h : {"token " + prefix_ + "-ka:wrong", "token " + prefix_ + "-nokey:alice-secret",
                               "token " + prefix_ + "-kb:bob-secret", "token " + prefix_ + "-kc:anything",
                               "token " + prefix_ + "-ka:alice-secreT", "token " + prefix_ + "-ka:alice-secret-"}) {
    auto r = identify(h);
    ASSERT_FALSE(r) << h;
    EXPECT_EQ(r.error().status, 401u) << h;
  }
}

TEST_F(Verifier, BearerTokensLiveExpireAndRevoke) {
  auto live = identify("Bearer " + prefix_ + "-live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->user, user("alice"));
  EXPECT_EQ(live->kind, auth::Kind::bearer);
  for (const std::string& t : {prefix_ + "-expired", prefix_ + "-revoked", prefix_ + "-unknown"}) {
    auto r = identify("Bearer " + t);
    ASSERT_FALSE(r) << t;
    EXPECT_EQ(r.error().status, 401u);
  }
}

TEST_F(Verifier, SessionsHonourTheirExpiry) {
  auto live = identify("", "sid=" + prefix_ + "-live");
  ASSERT_TRUE(live);
  EXPECT_EQ(live->user, user("alice"));
  EXPECT_EQ(live->kind, auth::Kind::session);
  // Last used 7 hours ago, expiry 6 hours: a guest whose session expired.
  auto old = identify("", "sid=" + prefix_ + "-old");
  ASSERT_TRUE(old);
  EXPECT_TRUE(old->is_guest());
  EXPECT_TRUE(old->session_expired);
  // An expired session does not hide a good Authorization header.
  auto both = identify("token " + prefix_ + "-ka:alice-secret", "sid=" + prefix_ + "-old");
  ASSERT_TRUE(both);
  EXPECT_EQ(both->user, user("alice"));
  auto none = identify("");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->is_guest());
  EXPECT_FALSE(none->session_expired);
}

TEST_F(Verifier, IdentitiesAreCachedBrieflyByCredential) {
  const std::string good = "token " + prefix_ + "-ka:alice-secret";
  ASSERT_TRUE(identify(good));
  const auto lookups = verifier_->stats().lookups;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(identify(good));
  EXPECT_EQ(verifier_->stats().lookups, lookups);
  EXPECT_EQ(verifier_->stats().cache_hits, 5u);
  // A different secret for the same key is a different credential: looked up, refused.
  EXPECT_FALSE(identify("token " + prefix_ + "-ka:guess"));
  EXPECT_EQ(verifier_->stats().lookups, lookups + 1);
  // Refusals are remembered too, so guessing does not cost a query each time.
  EXPECT_FALSE(identify("token " + prefix_ + "-ka:guess"));
  EXPECT_EQ(verifier_->stats().lookups, lookups + 1);
}

// A client in steady use never waits for a re-verification: in the last quarter of the TTL a
// use answers from the cache and checks again in the background. A revocation that check
// finds counts at once.
TEST_F(Verifier, IdentitiesInUseAreCheckedAgainAheadOfExpiry) {
  auth::Settings s;
  s.encryption_key = kKey;
  s.identity_ttl = 4s;  // checked again from 3 s on
  verifier_ = std::make_unique<auth::Verifier>(*pool_, s);
  const std::string good = "token " + prefix_ + "-ka:alice-secret";
  ASSERT_TRUE(identify(good));
  EXPECT_EQ(verifier_->stats().lookups, 1u);
  std::this_thread::sleep_for(3200ms);
  ASSERT_TRUE(identify(good));  // from the cache; starts the check
  EXPECT_EQ(verifier_->stats().cache_hits, 1u);
  // Let the background check finish.
  const auto until = std::chrono::steady_clock::now() + 3s;
  ioc_.restart();
  while (verifier_->stats().lookups < 2 && std::chrono::steady_clock::now() < until) ioc_.run_one_for(50ms);
  ioc_.run_for(100ms);
  EXPECT_EQ(verifier_->stats().lookups, 2u);
  std::this_thread::sleep_for(1000ms);  // past the first verification's expiry
  ASSERT_TRUE(identify(good));
  EXPECT_EQ(verifier_->stats().lookups, 2u) << "renewed in the background, not asked again in the request";
  EXPECT_EQ(verifier_->stats().cache_hits, 2u);

  // Revoked (the key's user disabled): the next background check drops it before its TTL ends.
  sql({"UPDATE `tabUser` SET enabled = 0 WHERE name = '" + user("alice") + "'"});
  std::this_thread::sleep_for(2200ms);
  ASSERT_TRUE(identify(good));  // still within the renewed TTL; starts the check
  ioc_.restart();
  ioc_.run_for(500ms);
  auto r = identify(good);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().status, 401u);
}

TEST_F(Verifier, DatabaseOutageIsAServiceErrorNotAVerdict) {
  test::BlackHole hole;
  db::Pool dead(ioc_, config::MariaDb{"127.0.0.1", hole.port(), "u", "p", "d"}, 1, 300ms, 300ms, 300ms);
  auth::Settings s;
  s.encryption_key = kKey;
  auth::Verifier v(dead, s);
  boost::system::result<auth::Identity, auth::Failure> out = auth::Failure{};
  test::run(ioc_, [](auth::Verifier& v, boost::system::result<auth::Identity, auth::Failure>& o) -> asio::awaitable<void> {
    auto r = co_await v.identify("token k:s", "");
    if (r) o = **r;
    else o = r.error();
  }(v, out));
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().status, 503u);
}

TEST(Presented, OneAuthorizationAndOneSidValue) {
  const std::string_view one[] = {"token a:b"};
  const std::string_view two[] = {"token a:b", "token a:b"};
  auto ok = auth::presented(one, 1, nullptr, 0);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->authorization, "token a:b");
  auto twice = auth::presented(two, 2, nullptr, 0);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().status, 400u);
  EXPECT_EQ(twice.error().exc_type, "InvalidAuthorizationHeader");

  struct Case {
    std::vector<std::string_view> lines;
    bool ok;
    std::string_view sid;
  };
  const Case cases[] = {
      {{"sid=abc"}, true, "abc"},
      {{"full_name=A; sid=abc; user_id=x"}, true, "abc"},
      {{"sid=abc; sid=abc"}, true, "abc"},  // the same value twice names one session
      {{"sid=abc", "other=1; sid=abc"}, true, "abc"},
      {{"sid=abc; sid=xyz"}, false, ""},
      {{"sid=abc", "sid=xyz"}, false, ""},
      {{"sid=abc;sid=\"xyz\""}, false, ""},
      {{"sid=abc; sid="}, false, ""},
      {{"xsid=abc; sid=xyz"}, true, "xyz"},  // another cookie whose name ends in sid
      {{"a=1"}, true, ""},
  };
  for (const auto& c : cases) {
    auto r = auth::presented(nullptr, 0, c.lines.data(), c.lines.size());
    ASSERT_EQ(static_cast<bool>(r), c.ok) << c.lines.front();
    if (r) EXPECT_EQ(r->sid, c.sid) << c.lines.front();
    else EXPECT_EQ(r.error().status, 400u);
  }
}

// Frappe's order when a session and an Authorization header come together (frappe/auth.py
// validate_auth, sessions.py resume): a front proxy must name the same user the ERP would.
TEST_F(Verifier, SessionAndHeaderTogetherDecideAsFrappeDoes) {
  sql({"INSERT INTO `tabSessions` (user, sid, sessiondata, lastupdate, status) VALUES ('" + user("carol") + "', '" + prefix_ +
       "-carol', '{}', NOW(6), 'Active')"});
  const std::string carol = "sid=" + prefix_ + "-carol";
  const std::string good_key = "token " + prefix_ + "-ka:alice-secret";
  // A valid API key beside a live session: the session is the user.
  auto r = identify(good_key, carol);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->user, user("carol"));
  // A wrong secret or unknown key beside a live session is still refused.
  for (const std::string& bad : {"token " + prefix_ + "-ka:wrong", "token " + prefix_ + "-nokey:x"}) {
    auto b = identify(bad, carol);
    ASSERT_FALSE(b) << bad;
    EXPECT_EQ(b.error().status, 401u);
  }
  // A valid Bearer token names its user whatever the session; an invalid one leaves the session.
  auto bearer = identify("Bearer " + prefix_ + "-live", carol);
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->user, user("alice"));
  auto stale_bearer = identify("Bearer " + prefix_ + "-revoked", carol);
  ASSERT_TRUE(stale_bearer);
  EXPECT_EQ(stale_bearer->user, user("carol"));
  // An unknown sid leaves a Guest, and then the header decides either way.
  auto unknown = "sid=" + prefix_ + "-nosuch";
  auto via_key = identify(good_key, unknown);
  ASSERT_TRUE(via_key);
  EXPECT_EQ(via_key->user, user("alice"));
  auto refused = identify("token " + prefix_ + "-ka:wrong", unknown);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().status, 401u);
  auto alone = identify("", unknown);
  ASSERT_TRUE(alone);
  EXPECT_TRUE(alone->is_guest());
  EXPECT_TRUE(alone->session_expired);
}

// Each unknown credential costs a database lookup: past the budget of failures per client
// address or per API key, new ones are refused without asking the database.
TEST_F(Verifier, FailedAuthenticationsAreBudgetedPerClientAndPerKey) {
  limits::LocalLimiter local;
  auth::FailureBudget budget(local, limits::Policy{"auth_failures", 3, 60, 3});
  auth::Settings s;
  s.encryption_key = kKey;
  auth::Verifier v(*pool_, s, &budget);
  auto attempt = [&](const std::string& authorization, const std::string& client, const std::string& sid = "") {
    boost::system::result<auth::Identity, auth::Failure> out = auth::Failure{};
    test::run(ioc_, [](auth::Verifier& v, std::string a, std::string sid, std::string c,
                       boost::system::result<auth::Identity, auth::Failure>& o) -> asio::awaitable<void> {
      std::function<std::string()> client = [c] { return c; };
      auto r = co_await v.identify(a, sid, std::move(client));
      if (r) o = **r;
      else o = r.error();
    }(v, authorization, sid, client, out));
    return out;
  };
  // A valid credential verified before the client starts guessing keeps working.
  const std::string good = "token " + prefix_ + "-ka:alice-secret";
  ASSERT_TRUE(attempt(good, "10.0.0.1"));
  // Four guesses (three plus a burst of three, on GCRA's terms: 20 s apart each) are looked up...
  for (int i = 0; i < 4; ++i) {
    auto r = attempt("token guess" + std::to_string(i) + ":x", "10.0.0.1");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 401u) << i;
  }
  const auto lookups = v.stats().lookups;
  // ...the fifth is refused without one, with the budget's fields.
  auto over = attempt("token guess-next:x", "10.0.0.1");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().status, 429u);
  EXPECT_EQ(over.error().exc_type, "TooManyRequestsError");
  ASSERT_TRUE(over.error().policy);
  EXPECT_GT(over.error().decision.retry_after_s, 0);
  EXPECT_EQ(v.stats().lookups, lookups);
  EXPECT_TRUE(attempt(good, "10.0.0.1"));  // already verified: not a guess
  // Unknown sids count like bad keys.
  for (int i = 0; i < 4; ++i) {
    auto r = attempt("", "10.0.3.1", prefix_ + "-nosuch" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->session_expired);
  }
  auto sid_over = attempt("", "10.0.3.1", prefix_ + "-nosuch-more");
  ASSERT_FALSE(sid_over);
  EXPECT_EQ(sid_over.error().status, 429u);
  // Another client has its own budget, but guesses at one API key from many addresses run
  // out the key's.
  for (int i = 0; i < 4; ++i) {
    auto r = attempt("token " + prefix_ + "-ka:guess" + std::to_string(i), "10.0.1." + std::to_string(i));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().status, 401u) << i;
  }
  auto key_over = attempt("token " + prefix_ + "-ka:guess-more", "10.0.2.1");
  ASSERT_FALSE(key_over);
  EXPECT_EQ(key_over.error().status, 429u);
  auto other = attempt("token other-key:x", "10.0.2.1");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().status, 401u);
}
