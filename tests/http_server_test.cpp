#include <gtest/gtest.h>
#include <simdjson.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <charconv>
#include <future>
#include <thread>

#include "proxy/http/http.hpp"
#include "tests/support/support.hpp"

namespace asio = boost::asio;
namespace http = pitstop::http;
using namespace std::chrono_literals;
using pitstop::test::RawClient;

namespace {

// Answers "<METHOD> <target> <body>"; ?delay=MS makes it wait first.
class EchoHandler : public http::Handler {
 public:
  explicit EchoHandler(asio::io_context& ioc) : ioc_(ioc) {}
  asio::awaitable<http::Response> handle(const http::Request& r) override {
    auto q = r.query();
    auto pos = q.find("delay=");
    if (pos != std::string_view::npos) {
      int ms = 0;
      std::from_chars(q.data() + pos + 6, q.data() + q.size(), ms);
      asio::steady_timer t(ioc_, std::chrono::milliseconds(ms));
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    http::Response resp;
    resp.content_type = "text/plain";
    resp.body = std::string(r.method_text()) + " " + std::string(r.target()) + " " + std::string(r.body());
    co_return resp;
  }

 private:
  asio::io_context& ioc_;
};

class HttpServer : public ::testing::Test {
 protected:
  void start(http::Settings s = {}) {
    listener_ = std::make_unique<http::Listener>(ioc_, s, handler_);
    listener_->bind({asio::ip::make_address("127.0.0.1"), 0});
    port_ = listener_->port();
    listener_->start();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  void TearDown() override {
    if (thread_.joinable()) {
      asio::post(ioc_, [this] {
        listener_->abort_all();
        ioc_.stop();
      });
      thread_.join();
    }
  }

  // Runs `f` on the server's thread and waits for it.
  template <class F>
  void on_server(F f) {
    std::promise<void> done;
    asio::post(ioc_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  // Sends `bytes` on a connection of its own: the answer is `status`, nothing follows it (no byte
  // of the request is read as another), and the connection is closed.
  void expect_refused(const std::string& bytes, int status) {
    RawClient c(port_);
    ASSERT_TRUE(c.send(bytes));
    auto r = c.read_response();
    ASSERT_TRUE(r) << bytes;
    EXPECT_EQ(r->status, status) << bytes;
    EXPECT_EQ(r->headers["connection"], "close") << bytes;
    EXPECT_FALSE(c.read_response(300ms)) << "more than one answer to: " << bytes;
    EXPECT_TRUE(c.closed_by_peer(3s)) << bytes;
  }

  asio::io_context ioc_{1};
  EchoHandler handler_{ioc_};
  std::unique_ptr<http::Listener> listener_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

std::string get(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: t\r\n" + extra + "\r\n";
}

// Checks Frappe's error shape and returns exc_type.
std::string exc_type_of(const std::string& body) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(body).get(doc)) {
    ADD_FAILURE() << "not JSON: " << body;
    return {};
  }
  std::string_view exc_type, messages;
  EXPECT_FALSE(doc["exc_type"].get(exc_type)) << body;
  EXPECT_FALSE(doc["_server_messages"].get(messages)) << body;
  // _server_messages is itself JSON: a list of JSON-encoded message objects.
  simdjson::dom::parser inner;
  simdjson::dom::array list;
  std::string copy(messages);
  EXPECT_FALSE(inner.parse(copy).get(list)) << messages;
  EXPECT_EQ(list.size(), 1u);
  return std::string(exc_type);
}

}  // namespace

TEST_F(HttpServer, KeepAliveServesManyRequestsOnOneConnection) {
  start();
  RawClient c(port_);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(c.send(get("/n/" + std::to_string(i))));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "GET /n/" + std::to_string(i) + " ");
    EXPECT_FALSE(r->headers.count("connection"));
    EXPECT_TRUE(r->headers.count("date"));
  }
}

TEST_F(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  start();
  RawClient c(port_);
  // The first is the slowest: answers must still come back in request order.
  ASSERT_TRUE(c.send(get("/1?delay=150") + get("/2?delay=50") + get("/3") +
                     "POST /4 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + get("/5")));
  for (const char* expect : {"GET /1?delay=150 ", "GET /2?delay=50 ", "GET /3 ", "POST /4 hello", "GET /5 "}) {
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, expect);
  }
}

TEST_F(HttpServer, HeaderBlockOverLimitIs431) {
  start();
  RawClient c(port_);
  std::string fields;
  for (int i = 0; i < 20; ++i) fields += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'a') + "\r\n";
  ASSERT_TRUE(c.send(get("/", fields)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_EQ(exc_type_of(r->body), "RequestHeaderFieldsTooLarge");
  EXPECT_TRUE(c.closed_by_peer(3s));
}

TEST_F(HttpServer, HeaderJustUnderLimitIsServed) {
  start();
  RawClient c(port_);
  std::string fields;
  for (int i = 0; i < 14; ++i) fields += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'a') + "\r\n";
  ASSERT_TRUE(c.send(get("/", fields)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServer, LongUrlIs414) {
  start();
  for (std::size_t len : {9000u, 20000u}) {  // inside the header limit, and past it
    RawClient c(port_);
    ASSERT_TRUE(c.send(get("/" + std::string(len, 'u'))));
    auto r = c.read_response();
    ASSERT_TRUE(r) << len;
    EXPECT_EQ(r->status, 414) << len;
    EXPECT_EQ(exc_type_of(r->body), "RequestURITooLarge");
  }
  RawClient ok(port_);
  ASSERT_TRUE(ok.send(get("/" + std::string(8000, 'u'))));
  auto r = ok.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServer, DeclaredBodyOverLimitIs413WithoutReadingIt) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n"));
  auto r = c.read_response(2s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(exc_type_of(r->body), "RequestEntityTooLarge");
}

TEST_F(HttpServer, ChunkedBodyOverLimitIs413) {
  http::Settings s;
  s.max_body_bytes = 1000;
  start(s);
  RawClient c(port_);
  std::string req = "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) req += "200\r\n" + std::string(512, 'b') + "\r\n";
  req += "0\r\n\r\n";
  ASSERT_TRUE(c.send(req));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(HttpServer, BodyAtTheLimitIsServed) {
  http::Settings s;
  s.max_body_bytes = 1000;
  start(s);
  RawClient c(port_);
  ASSERT_TRUE(c.send("PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'z')));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "PUT /x " + std::string(1000, 'z'));
}

TEST_F(HttpServer, SlowHeaderIsCutOffWith408) {
  http::Settings s;
  s.header_read = 300ms;
  start(s);
  RawClient c(port_);
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(c.send("GET /slow HTTP/1.1\r\nHost: t\r\n"));  // the blank line never comes
  auto r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(exc_type_of(r->body), "RequestTimeout");
  EXPECT_TRUE(c.closed_by_peer(3s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
}

TEST_F(HttpServer, TricklingHeaderIsCutOffToo) {
  http::Settings s;
  s.header_read = 400ms;
  start(s);
  RawClient c(port_);
  // One byte every 50 ms would keep a per-read timeout happy forever; the deadline is per header.
  const std::string req = get("/trickle");
  const auto started = std::chrono::steady_clock::now();
  for (char ch : req) {
    if (!c.send(std::string(1, ch))) break;
    if (std::chrono::steady_clock::now() - started > 1s) break;
    std::this_thread::sleep_for(50ms);
  }
  auto r = c.read_response(3s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
}

TEST_F(HttpServer, SlowBodyIsCutOffWith408) {
  http::Settings s;
  s.body_read = 300ms;
  start(s);
  RawClient c(port_);
  ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789"));
  auto r = c.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
}

TEST_F(HttpServer, IdleKeepAliveConnectionIsClosed) {
  http::Settings s;
  s.idle_keepalive = 300ms;
  start(s);
  RawClient c(port_);
  ASSERT_TRUE(c.send(get("/")));
  ASSERT_TRUE(c.read_response());
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.closed_by_peer(5s));
  auto idle = std::chrono::steady_clock::now() - started;
  EXPECT_GE(idle, 250ms);
  EXPECT_LT(idle, 3s);
}

TEST_F(HttpServer, SilentConnectionIsClosedAtTheHeaderDeadline) {
  http::Settings s;
  s.header_read = 300ms;
  s.idle_keepalive = 60s;
  start(s);
  RawClient c(port_);
  EXPECT_TRUE(c.closed_by_peer(5s));
}

TEST_F(HttpServer, MalformedRequestsAre400) {
  start();
  for (std::string bad : {std::string("GARBAGE\r\n\r\n"), std::string("GET / HTTP/9.9\r\n\r\n"),
                          std::string("GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
                          std::string("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
                          std::string("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")}) {
    RawClient c(port_);
    ASSERT_TRUE(c.send(bad));
    auto r = c.read_response();
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_EQ(exc_type_of(r->body), "BadRequest");
    EXPECT_TRUE(c.closed_by_peer(3s));
  }
}

// A body the front proxy does not frame as chunked must never be read as the next request
// (request smuggling): every Transfer-Encoding it cannot honour is refused and the connection closed.
TEST_F(HttpServer, TransferEncodingNotEndingInChunkedIsRefusedAndClosed) {
  start();
  const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
  struct Case {
    std::string head;
    int status;
  };
  const Case cases[] = {
      {"Transfer-Encoding: chunked, identity\r\n", 400},
      {"Transfer-Encoding: identity\r\n", 400},
      {"Transfer-Encoding: xchunked\r\n", 400},
      {"Transfer-Encoding: chunked;ext=1\r\n", 400},
      {"Transfer-Encoding: \r\n", 400},
      {"Transfer-Encoding: chunked\r\n identity\r\n", 400},           // obs-fold
      {"Transfer-Encoding: identity\r\nTransfer-Encoding: x\r\n", 400},
      {"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", 400},
      {"Transfer-Encoding: chunked, chunked\r\n", 400},
      {"Transfer-Encoding: identity\r\nContent-Length: 37\r\n", 400},
      {"Transfer-Encoding: gzip, chunked\r\n", 501},
  };
  for (const auto& c : cases) expect_refused("POST /p HTTP/1.1\r\nHost: t\r\n" + c.head + "\r\n" + smuggled, c.status);
  // The one accepted form still works, split over two lines too.
  RawClient ok(port_);
  ASSERT_TRUE(ok.send("POST /p HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
  auto r = ok.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "POST /p abc");
}

TEST_F(HttpServer, Http10WithTransferEncodingIsRefusedAndClosed) {
  start();
  expect_refused("POST /p HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
}

TEST_F(HttpServer, FoldedHeaderLinesAreRefused) {
  start();
  expect_refused("GET /f HTTP/1.1\r\nHost: t\r\nX-A: one\r\n\ttwo\r\n\r\n", 400);
  expect_refused("GET /f HTTP/1.1\r\n Host: t\r\n\r\n", 400);  // whitespace before the first field
}

TEST_F(HttpServer, HostMustBePresentOnceAndValid) {
  start();
  for (std::string head : {std::string("GET / HTTP/1.1\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
                           std::string("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: \r\n\r\n"),
                           std::string("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
                           std::string("GET / HTTP/1.1\r\nHost: a:80:1\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: a:x\r\n\r\n"),
                           std::string("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"), std::string("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"),
                           std::string("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")})
    expect_refused(head, 400);
  for (std::string host : {"example.com", "example.com:8080", "127.0.0.1:80", "[::1]:8000", "[2001:db8::1]", "erp_1.local"}) {
    RawClient c(port_);
    ASSERT_TRUE(c.send("GET /h HTTP/1.1\r\nHost: " + host + "\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << host;
    EXPECT_EQ(r->status, 200) << host;
  }
  // HTTP/1.0 had no Host.
  RawClient old(port_);
  ASSERT_TRUE(old.send("GET /h HTTP/1.0\r\n\r\n"));
  auto r = old.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServer, AbsoluteFormTargetIsServedAsItsPath) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET http://erp.example:8000/api/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /api/x?q=1 ");
  ASSERT_TRUE(c.send("GET HTTPS://erp.example HTTP/1.1\r\nHost: erp.example\r\n\r\n"));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET / ");
  for (std::string bad : {std::string("GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n"), std::string("GET http://u@a/b HTTP/1.1\r\nHost: a\r\n\r\n"),
                          std::string("GET http:///b HTTP/1.1\r\nHost: a\r\n\r\n"), std::string("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n"),
                          std::string("GET * HTTP/1.1\r\nHost: a\r\n\r\n")})
    expect_refused(bad, 400);
  expect_refused("CONNECT erp.example:443 HTTP/1.1\r\nHost: erp.example:443\r\n\r\n", 405);
}

TEST_F(HttpServer, OneLongHeaderLineIs431NotUrlTooLong) {
  start();
  for (std::size_t len : {17000u, 40000u}) {
    RawClient c(port_);
    ASSERT_TRUE(c.send(get("/", "X-Big: " + std::string(len, 'b') + "\r\n")));
    auto r = c.read_response();
    ASSERT_TRUE(r) << len;
    EXPECT_EQ(r->status, 431) << len;
    EXPECT_EQ(exc_type_of(r->body), "RequestHeaderFieldsTooLarge") << len;
  }
  // A long cookie, the usual culprit, says the same.
  RawClient c(port_);
  ASSERT_TRUE(c.send(get("/", "Cookie: sid=" + std::string(20000, 'c') + "\r\n")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
}

// Heads another parser could read differently: refused, never guessed at.
TEST_F(HttpServer, AmbiguousHeadsAreRefused) {
  start();
  for (std::string bad : {std::string("GET /a HTTP/1.1\nHost: t\n\n"), std::string("GET /a HTTP/1.1\r\nHost : t\r\n\r\n"),
                          std::string("GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc"),
                          std::string("GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 4\r\n\r\nabc"),
                          std::string("GET /a HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n"),
                          std::string("GET /a HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n", 33),
                          std::string("GET /a b HTTP/1.1\r\nHost: t\r\n\r\n"),
                          std::string("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n")})
    expect_refused(bad, 400);
}

TEST_F(HttpServer, ExpectContinueGetsInterimResponse) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("POST /c HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = c.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.send("abc"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "POST /c abc");
}

TEST_F(HttpServer, HeadHasLengthButNoBody) {
  start();
  RawClient c(port_);
  ASSERT_TRUE(c.send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" + get("/after")));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  // The raw client read Content-Length bytes as body: they must belong to the next response.
  EXPECT_EQ(r->headers["content-length"], std::to_string(std::string("HEAD /h ").size()));
  EXPECT_EQ(r->body.substr(0, 8), "HTTP/1.1");
}

TEST_F(HttpServer, Http10ClosesUnlessKeepAliveAsked) {
  start();
  {
    RawClient c(port_);
    ASSERT_TRUE(c.send("GET /a HTTP/1.0\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->headers["connection"], "close");
    EXPECT_TRUE(c.closed_by_peer(3s));
  }
  RawClient c(port_);
  ASSERT_TRUE(c.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers["connection"], "keep-alive");
  ASSERT_TRUE(c.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  EXPECT_TRUE(c.read_response());
}

TEST_F(HttpServer, ConnectionLimitAnswers503) {
  http::Settings s;
  s.max_connections = 2;
  start(s);
  auto a = std::make_unique<RawClient>(port_);
  RawClient b(port_);
  for (auto* c : {a.get(), &b}) {
    ASSERT_TRUE(c->send(get("/")));
    ASSERT_TRUE(c->read_response());
  }
  RawClient third(port_);
  auto r = third.read_response(3s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  // A slot frees up when a connection closes.
  ASSERT_TRUE(a->send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  ASSERT_TRUE(a->read_response());
  ASSERT_TRUE(a->closed_by_peer(3s));
  a.reset();
  std::this_thread::sleep_for(100ms);
  RawClient fourth(port_);
  ASSERT_TRUE(fourth.send(get("/")));
  auto r4 = fourth.read_response();
  ASSERT_TRUE(r4);
  EXPECT_EQ(r4->status, 200);
}

TEST_F(HttpServer, RequestsPerConnectionAreCapped) {
  http::Settings s;
  s.max_requests_per_connection = 2;
  start(s);
  RawClient c(port_);
  ASSERT_TRUE(c.send(get("/1")));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_FALSE(r1->headers.count("connection"));
  ASSERT_TRUE(c.send(get("/2")));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->headers["connection"], "close");
  EXPECT_TRUE(c.closed_by_peer(3s));
}

TEST_F(HttpServer, DrainFinishesInFlightRequestsAndClosesIdleOnes) {
  start();
  RawClient idle(port_);
  ASSERT_TRUE(idle.send(get("/warm")));
  ASSERT_TRUE(idle.read_response());
  RawClient busy(port_);
  ASSERT_TRUE(busy.send(get("/slow?delay=500")));
  std::this_thread::sleep_for(100ms);

  std::promise<void> drained;
  on_server([&] { listener_->drain([&] { drained.set_value(); }); });

  EXPECT_TRUE(idle.closed_by_peer(2s));
  auto r = busy.read_response(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /slow?delay=500 ");
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_EQ(drained.get_future().wait_for(5s), std::future_status::ready);
  // No longer accepting.
  EXPECT_THROW(RawClient late(port_), std::runtime_error);
}

// Header values may carry user data (an ETag, a parameter in Cache-Status): a CR or LF in one
// must never end the line and start a header of the client's choosing.
TEST(Response, HeaderValuesCannotSplitTheHeaderBlock) {
  http::Response r;
  r.set_header("ETag", "\"abc\"");
  r.set_header("Cache-Status", "pitstop; detail=x\r\nSet-Cookie: sid=evil\nX: y\r");
  EXPECT_EQ(r.headers, "ETag: \"abc\"\r\nCache-Status: pitstop; detail=x  Set-Cookie: sid=evil X: y \r\n");
}
