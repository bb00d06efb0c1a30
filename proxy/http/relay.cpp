// A request no rule answers, relayed to the upstream (the ERP) and its answer back, as a reverse
// proxy must: hop-by-hop fields dropped both ways, X-Forwarded-* set, bodies streamed in pieces
// (Beast's buffer_body) in both directions with each side's pace as backpressure.
//
// A request body up to limits.max_body_bytes is read whole before the upstream is asked, as
// nginx buffers request bodies: a malformed chunked body is then refused without the upstream
// ever seeing the request, and a request whose kept-alive connection turns out to be closed by
// the upstream can be sent again on a new one. A larger body is streamed as it arrives.
// GCC 12 at -O3 takes the frame of the awaitable operator || below (asio's recycling allocator:
// operator new, then free through the same allocator) for a mismatched new/delete; it is not.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <array>
#include <charconv>
#include <span>
#include <tuple>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/write.hpp>

#include "proxy/http/relay.hpp"

namespace pitstop::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
using std::chrono::milliseconds;
using tcp = asio::ip::tcp;
using Session = Listener::Session;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// A piece of a streamed body: small enough to come from malloc's free lists rather than a fresh
// mapping for every relay (64 KiB pieces cost a tenth of a relay's CPU in malloc and its trims).
constexpr std::size_t kPiece = 16 * 1024;
constexpr std::size_t kMaxUpstreamHeader = 64 * 1024;
// 1xx answers before the real one (103 Early Hints, a stray 100 Continue): skipped, up to this many.
constexpr int kMaxInterim = 8;
constexpr std::size_t kMaxRefusalBody = 1 << 20;

// One deadline over both sockets of a relay, kept by the listener's sweeper like any session's:
// arming it is a store, not a timer operation (a relay arms it at every step).
class Deadline {
 public:
  Deadline(std::shared_ptr<Session> s, tcp::socket* relayed) : s_(std::move(s)) { s_->relayed = relayed; }
  ~Deadline() { stop(); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  void arm(milliseconds d) { http::arm(s_, d); }
  bool fired() const { return s_->timed_out; }
  // Before the relayed socket goes away.
  void stop() {
    disarm(s_);
    s_->relayed = nullptr;
  }

 private:
  std::shared_ptr<Session> s_;
};

// Hop-by-hop fields (RFC 9110 7.6.1): Connection and every field it names, and the fixed list.
template <class Fields>
void drop_hop_by_hop(Fields& f) {
  // Every Connection line, adjacent or not. Erasing another field leaves the value being read in
  // place; a Connection that names itself goes with the fixed list below.
  for (const auto& line : f)
    if (line.name() == bhttp::field::connection)
      for (auto token : bhttp::token_list(line.value()))
        if (!beast::iequals(token, "connection")) f.erase(token);
  for (auto field : {bhttp::field::connection, bhttp::field::keep_alive, bhttp::field::te, bhttp::field::trailer,
                     bhttp::field::transfer_encoding, bhttp::field::upgrade, bhttp::field::proxy_authenticate,
                     bhttp::field::proxy_authorization, bhttp::field::proxy_connection})
    f.erase(field);
  for (auto it = f.begin(); it != f.end();)
    it = beast::iequals(it->name_string().substr(0, 6), "proxy-") ? f.erase(it) : std::next(it);
}

using BodyParser = bhttp::request_parser<bhttp::buffer_body>;
using Upgraded = bhttp::request<bhttp::buffer_body>;

// The head the upstream gets: the client's, less what concerns only this hop, plus who asked.
// Who asked, for the upstream: set on every relayed head, plain or upgrade.
template <class Fields>
void set_forwarded(Fields& f, const std::string& host, const Passage& passage, const UpstreamSettings& us) {
  f.set("X-Forwarded-For", passage.forwarded_for);
  f.set("X-Forwarded-Proto", "http");
  f.set("X-Forwarded-Host", host);
  if (!us.site_name.empty()) f.set("X-Frappe-Site-Name", us.site_name);
  if (!passage.request_id.empty()) f.set("X-Request-Id", passage.request_id);
}

void forward_head(Upgraded& req, const Passage& passage, const UpstreamSettings& us) {
  const std::string host(req[bhttp::field::host]);
  drop_hop_by_hop(req);
  req.erase(bhttp::field::expect);  // answered here: the body is read before the upstream is asked
  set_forwarded(req, host, passage, us);
  req.version(11);
}

// An answer of pitstop's own about the upstream: Frappe's error shape for the API, a line of
// text for the desk and files.
Response upstream_problem(const Problem& p, bool api) {
  if (api) return error_response(p);
  Response r;
  r.status = p.status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::to_string(p.status) + " " + reason_phrase(p.status) + ": " + p.message + "\n";
  return r;
}

// An answer of pitstop's own that ends the relay (and the connection), noted in the passage.
asio::awaitable<void> answer_and_close(Listener::Impl& L, std::shared_ptr<Session> s, Passage& passage, Response r) {
  if (!passage.request_id.empty()) r.set_header("X-Request-Id", passage.request_id);
  passage.status = r.status;
  passage.bytes = r.body.size();
  co_await send_and_close(std::move(s), L.settings, std::move(r));
}

Problem bad_gateway(std::string message) { return Problem{502, "BadGateway", std::move(message), true}; }

// The client's side of a relayed request: its body, read in pieces through the session's buffer.
struct Downstream {
  std::shared_ptr<Session> s;
  beast::flat_buffer& buffer;
  BodyParser& parser;
  Deadline& dog;
  const Listener::Impl& L;
  const UpstreamSettings& us;

  // Reads the next piece of the body into `piece`; the bytes read, or why there are none.
  asio::awaitable<std::pair<error_code, std::size_t>> read(char* piece, std::size_t size) {
    auto& body = parser.get().body();
    body.data = piece;
    body.size = size;
    dog.arm(L.settings.body_read);
    auto [ec, n] = co_await bhttp::async_read(s->socket, buffer, parser, kToken);
    if (ec == bhttp::error::need_buffer) ec = {};
    co_return std::pair{ec, size - body.size};
  }

  // The answer to a body the client could not send: nothing when it went away.
  std::optional<Response> failure(error_code ec) const {
    if (dog.fired()) return error_response(408, "RequestTimeout", "The request body was not received in time");
    if (ec == bhttp::error::body_limit)
      return error_response(413, "RequestEntityTooLarge", "The request body is larger than " + std::to_string(us.max_body_bytes) + " bytes");
    if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted)
      return std::nullopt;
    return error_response(400, "BadRequest", "Malformed HTTP request body: " + ec.message());
  }
};

// A relay's buffers, kept by its worker for the next relay: two 16 KiB blocks taken from malloc
// and given back every request kept malloc trimming, growing and consolidating its heap (malloc
// was a fifth of the relay's user time). Per thread: a session runs on its worker's thread from
// start to end.
struct Spare {
  std::unique_ptr<char[]> piece{new char[kPiece]};  // not zeroed: every byte used is read first
  beast::flat_buffer upstream{kMaxUpstreamHeader + kPiece};
  std::string head;  // the request's head, then the answer's (the request is sent before the answer is read)

  Spare() {
    // Beast reads as much as the buffer has room for, and at least 512 bytes: from an empty
    // buffer, a 2 KB answer would take six receives.
    upstream.reserve(kPiece);
    head.reserve(1024);
  }

  struct Back {
    void operator()(Spare* s) const { give_back(s); }
  };
  using Held = std::unique_ptr<Spare, Back>;

  static Held take() {
    auto& kept = shelf();
    if (kept.empty()) return Held(new Spare);
    Held s(kept.back().release());
    kept.pop_back();
    return s;
  }

 private:
  static constexpr std::size_t kKept = 64;  // per worker: at most 64 × 32 KiB idle

  static std::vector<std::unique_ptr<Spare>>& shelf() {
    thread_local std::vector<std::unique_ptr<Spare>> kept;
    return kept;
  }
  static void give_back(Spare* s) {
    std::unique_ptr<Spare> owned(s);
    auto& kept = shelf();
    // A large head grew the buffers: not kept at that size.
    if (kept.size() >= kKept || owned->upstream.capacity() > 2 * kPiece || owned->head.capacity() > 8 * 1024) return;
    owned->upstream.clear();
    kept.push_back(std::move(owned));
  }
};

// A message on its way out: its head, formatted once, then its body in pieces as they come,
// sent as they are (a length was declared) or as chunks. Beast's serializer does the same through
// a view over every field and chunk part that it walks for each write; on the relay's path that
// walk cost more than the head's bytes (a tenth of the relay's user time in the profile).
class Outgoing {
 public:
  explicit Outgoing(std::string& head) : head_(head) {}

  template <bool isRequest>
  void start(const bhttp::header<isRequest>& h, bool chunked) {
    head_.clear();
    if constexpr (isRequest) {
      head_.append(h.method_string()).append(" ").append(h.target()).append(" HTTP/1.1\r\n");
    } else {
      const auto reason = h.reason().empty() ? bhttp::obsolete_reason(h.result()) : h.reason();
      head_.append("HTTP/1.1 ").append(std::to_string(h.result_int())).append(" ").append(reason).append("\r\n");
    }
    for (const auto& f : h) head_.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    head_.append("\r\n");
    head_sent_ = false;
    chunked_ = chunked;
  }

  // The head when not sent yet, and `piece` framed; `last` ends a chunked body.
  asio::awaitable<error_code> write(tcp::socket& to, std::string_view piece, bool last) {
    static constexpr std::string_view kCrlf = "\r\n", kLastChunk = "0\r\n\r\n";
    std::array<asio::const_buffer, 5> parts;
    std::size_t n = 0;
    if (!head_sent_) parts[n++] = asio::buffer(head_);
    if (chunked_ && !piece.empty()) {
      const auto size_line = chunk_size_line(piece.size());
      parts[n++] = asio::buffer(size_line_, size_line);
      parts[n++] = asio::buffer(piece.data(), piece.size());
      parts[n++] = asio::buffer(kCrlf.data(), kCrlf.size());
    } else if (!piece.empty()) {
      parts[n++] = asio::buffer(piece.data(), piece.size());
    }
    if (chunked_ && last) parts[n++] = asio::buffer(kLastChunk.data(), kLastChunk.size());
    head_sent_ = true;
    if (n == 0) co_return error_code{};
    auto [ec, written] = co_await asio::async_write(to, std::span<const asio::const_buffer>(parts.data(), n), kToken);
    co_return ec;
  }

 private:
  std::size_t chunk_size_line(std::size_t size) {
    const auto end = std::to_chars(size_line_, size_line_ + 16, size, 16).ptr;
    end[0] = '\r';
    end[1] = '\n';
    return static_cast<std::size_t>(end + 2 - size_line_);
  }

  std::string& head_;
  char size_line_[18];
  bool head_sent_ = false;
  bool chunked_ = false;
};

// How a relay ended.
struct Outcome {
  bool client_keep = false;              // the client's connection carries another request
  std::optional<Problem> before_answer;  // failed before any of the answer reached the client
  bool retry = false;                    // ... on a kept-alive connection the upstream had closed
};

class Relay {
 public:
  Relay(Listener::Impl& L, std::shared_ptr<Session> s, beast::flat_buffer& buffer, BodyParser& parser, const UpstreamSettings& us,
        std::size_t served, Passage& passage)
      : L_(L), s_(std::move(s)), buffer_(buffer), parser_(parser), us_(us), served_(served), passage_(passage), spare_(Spare::take()),
        piece_(spare_->piece.get()), ubuffer_(spare_->upstream) {}

  // Why a relay ends before the upstream is asked: an answer, or none when the client went away.
  struct Stop {
    std::optional<Response> answer;
  };

  // Until the body is read whole or is larger than the session's own body limit.
  asio::awaitable<std::optional<Stop>> read_prefix(Deadline& dog) {
    Downstream down{s_, buffer_, parser_, dog, L_, us_};
    if (beast::iequals(parser_.get()[bhttp::field::expect], "100-continue") && !parser_.is_done()) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      dog.arm(L_.settings.write);
      auto [ec, n] = co_await asio::async_write(s_->socket, asio::buffer(kContinue.data(), kContinue.size()), kToken);
      if (ec) co_return Stop{};
    }
    while (!parser_.is_done() && prefix_.size() < L_.settings.max_body_bytes) {
      auto [ec, n] = co_await down.read(piece_, kPiece);
      if (ec) co_return Stop{down.failure(ec)};
      prefix_.append(piece_, n);
    }
    whole_ = parser_.is_done();
    co_return std::nullopt;
  }

  bool whole() const { return whole_; }

  // One exchange on one upstream connection.
  asio::awaitable<Outcome> exchange(Upgraded& req, tcp::socket& u, bool reused, Deadline& dog) {
    Outcome out;
    ubuffer_.consume(ubuffer_.size());
    upstream_reusable_ = false;
    if (auto failed = co_await send_request(req, u, dog, reused, out); failed) co_return out;
    co_return co_await relay_answer(req, u, dog, reused);
  }

  bool upstream_reusable() const { return upstream_reusable_; }

 private:
  // The head and the body: the prefix read already, then (when not whole) the rest as it comes.
  asio::awaitable<bool> send_request(Upgraded& req, tcp::socket& u, Deadline& dog, bool reused, Outcome& out) {
    if (whole_) {
      req.chunked(false);
      req.content_length(prefix_.size());
      if (prefix_.empty() && !has_request_body_) req.erase(bhttp::field::content_length);
    } else if (declared_length_) {
      req.content_length(*declared_length_);  // streamed with the length the client declared
    } else {
      req.chunked(true);  // the rest's length is not known: chunked to the upstream
    }
    Outgoing out_req(spare_->head);
    out_req.start(req, !whole_ && !declared_length_);
    dog.arm(us_.idle_timeout);
    if (auto ec = co_await out_req.write(u, prefix_, whole_)) {
      out.before_answer = bad_gateway("The ERP closed the connection before the request was sent");
      out.retry = reused && whole_;
      co_return true;
    }
    Downstream down{s_, buffer_, parser_, dog, L_, us_};
    while (!parser_.is_done()) {
      auto [rec, got] = co_await down.read(piece_, kPiece);
      if (rec) {
        // The upstream has part of a request that will never end: it is dropped with it.
        out.before_answer.reset();
        client_failure_ = down.failure(rec);
        co_return true;
      }
      dog.arm(us_.idle_timeout);
      if (auto wec = co_await out_req.write(u, std::string_view(piece_, got), parser_.is_done())) {
        out.before_answer = bad_gateway("The ERP closed the connection while the request body was sent");
        co_return true;
      }
    }
    co_return false;
  }

  // The answer's head, after any interim 1xx answers.
  asio::awaitable<std::optional<Problem>> read_answer_head(const Upgraded& req, tcp::socket& u, Deadline& dog) {
    for (int interim = 0; interim <= kMaxInterim; ++interim) {
      answer_.emplace();
      answer_->header_limit(kMaxUpstreamHeader);
      answer_->body_limit(boost::none);
      if (req.method() == bhttp::verb::head) answer_->skip(true);
      dog.arm(us_.response_timeout);
      auto [ec, n] = co_await bhttp::async_read_header(u, ubuffer_, *answer_, kToken);
      if (ec) {
        if (dog.fired())
          co_return Problem{504, "GatewayTimeout", "The ERP did not answer within " + std::to_string(us_.response_timeout.count()) + " ms", true};
        co_return bad_gateway("The ERP closed the connection without answering (" + ec.message() + ")");
      }
      const unsigned status = answer_->get().result_int();
      if (status < 100 || status >= 200 || status == 101) co_return std::nullopt;
    }
    co_return bad_gateway("The ERP sent more than " + std::to_string(kMaxInterim) + " interim answers");
  }

  bool keep_client() const {
    const Settings& cfg = L_.settings;
    return client_keep_alive_ && !L_.draining && (cfg.max_requests_per_connection == 0 || served_ < cfg.max_requests_per_connection);
  }

  asio::awaitable<Outcome> relay_answer(const Upgraded& req, tcp::socket& u, Deadline& dog, bool reused) {
    Outcome out;
    if (auto p = co_await read_answer_head(req, u, dog)) {
      out.before_answer = std::move(*p);
      out.retry = reused && whole_ && out.before_answer->status == 502 && ubuffer_.size() == 0;
      co_return out;
    }
    auto& res = answer_->get();
    const bool upstream_keep = res.keep_alive();
    const unsigned status = res.result_int();
    const bool bodyless = req.method() == bhttp::verb::head || status == 204 || status == 304 || status == 101;
    drop_hop_by_hop(res);
    out.client_keep = keep_client();
    if (!bodyless && !answer_->content_length()) {
      // Chunked from the upstream, or delimited by its close: chunked again to an HTTP/1.1
      // client; an HTTP/1.0 client reads to the close.
      if (client_version_ == 11) res.chunked(true);
      else out.client_keep = false;
    }
    res.version(11);
    res.keep_alive(out.client_keep);
    if (client_version_ == 10 && out.client_keep) res.set(bhttp::field::connection, "keep-alive");
    if (!passage_.request_id.empty() && res.find("X-Request-Id") == res.end()) res.set("X-Request-Id", passage_.request_id);
    passage_.status = status;

    // The head goes out with the first piece of the body, in one write.
    Outgoing to_client(spare_->head);
    to_client.start(res, res.chunked());
    if (bodyless) {
      dog.arm(L_.settings.write);
      if (co_await to_client.write(s_->socket, {}, true)) co_return Outcome{};
    } else if (!co_await relay_answer_body(u, to_client, dog)) {
      co_return Outcome{};
    }
    upstream_reusable_ = upstream_keep && answer_->is_done() && ubuffer_.size() == 0;
    co_return out;
  }

  // Piece by piece: each piece is written to the client before the next is read.
  asio::awaitable<bool> relay_answer_body(tcp::socket& u, Outgoing& to_client, Deadline& dog) {
    auto& body = answer_->get().body();
    do {
      std::size_t got = 0;
      if (!answer_->is_done()) {
        body.data = piece_;
        body.size = kPiece;
        dog.arm(us_.idle_timeout);
        auto [ec, n] = co_await bhttp::async_read(u, ubuffer_, *answer_, kToken);
        if (ec == bhttp::error::need_buffer) ec = {};
        // Half an answer cannot be taken back: the client's connection ends with it.
        if (ec) co_return false;
        got = kPiece - body.size;
      }
      dog.arm(L_.settings.write);
      if (co_await to_client.write(s_->socket, std::string_view(piece_, got), answer_->is_done())) co_return false;
      passage_.bytes += got;
    } while (!answer_->is_done());
    co_return true;
  }

 public:
  void note_client(const Upgraded& req) {
    client_keep_alive_ = req.keep_alive();
    client_version_ = req.version();
    has_request_body_ = parser_.content_length().has_value() || parser_.chunked();
    if (auto length = parser_.content_length()) declared_length_ = *length;
  }
  const std::optional<Response>& client_failure() const { return client_failure_; }

 private:
  Listener::Impl& L_;
  std::shared_ptr<Session> s_;
  beast::flat_buffer& buffer_;
  BodyParser& parser_;
  const UpstreamSettings& us_;
  std::size_t served_;
  Passage& passage_;
  Spare::Held spare_;
  char* piece_;
  std::string prefix_;
  bool whole_ = true;
  bool client_keep_alive_ = false;
  unsigned client_version_ = 11;
  bool has_request_body_ = false;
  std::optional<std::uint64_t> declared_length_;
  beast::flat_buffer& ubuffer_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> answer_;
  bool upstream_reusable_ = false;
  std::optional<Response> client_failure_;
};

// --- websockets: after the upstream's 101, bytes both ways until either side closes

bool websocket_upgrade(const HeadParser::value_type& req) {
  if (req.method() != bhttp::verb::get) return false;
  bool websocket = false, upgrade = false;
  for (auto token : bhttp::token_list(req[bhttp::field::upgrade])) websocket = websocket || beast::iequals(token, "websocket");
  for (auto token : bhttp::token_list(req[bhttp::field::connection])) upgrade = upgrade || beast::iequals(token, "upgrade");
  return websocket && upgrade;
}

// Copies what `from` sends to `to` until either fails or closes; every byte defers the idle close.
asio::awaitable<void> pump(tcp::socket& from, tcp::socket& to, Deadline& dog, milliseconds idle) {
  std::vector<char> piece(16 * 1024);
  while (true) {
    dog.arm(idle);
    auto [ec, n] = co_await from.async_read_some(asio::buffer(piece), kToken);
    if (ec) co_return;
    dog.arm(idle);
    auto [wec, wn] = co_await asio::async_write(to, asio::buffer(piece.data(), n), kToken);
    if (wec) co_return;
  }
}

// Writes what is already buffered for `to` (bytes that came with a head).
asio::awaitable<bool> flush(beast::flat_buffer& pending, tcp::socket& to, Deadline& dog, milliseconds limit) {
  if (pending.size() == 0) co_return true;
  dog.arm(limit);
  auto [ec, n] = co_await asio::async_write(to, pending.data(), kToken);
  pending.consume(pending.size());
  co_return !ec;
}

// The upgrade request as the upstream gets it: hop-by-hop fields dropped, but the upgrade kept.
void forward_upgrade(bhttp::request<bhttp::string_body>& req, const Passage& passage, const UpstreamSettings& us) {
  const std::string upgrade(req[bhttp::field::upgrade]);
  const std::string host(req[bhttp::field::host]);
  drop_hop_by_hop(req);
  req.set(bhttp::field::upgrade, upgrade);
  req.set(bhttp::field::connection, "Upgrade");
  set_forwarded(req, host, passage, us);
  req.version(11);
}

asio::awaitable<bool> tunnel(Listener::Impl& L, std::shared_ptr<Session> s, beast::flat_buffer& buffer, HeadParser& head, Passage& passage) {
  using namespace asio::experimental::awaitable_operators;
  Upstream& up = *L.upstream;
  const UpstreamSettings& us = up.settings();
  auto& req = head.get();
  const bool api = req.target().starts_with("/api/");
  forward_upgrade(req, passage, us);
  // Frappe's realtime server (socket.io) may listen elsewhere than the app.
  const auto where = req.target().starts_with("/socket.io/") ? Upstream::Target::realtime : Upstream::Target::http;
  auto conn = co_await up.acquire(where);
  if (!conn) {
    co_await answer_and_close(L, s, passage, upstream_problem(conn.error(), api));
    co_return false;
  }
  tcp::socket u = std::move(conn->socket);
  auto dog = std::make_unique<Deadline>(s, &u);
  std::optional<Problem> failed;
  beast::flat_buffer ubuffer(kMaxUpstreamHeader);
  ubuffer.reserve(kPiece);  // a refused upgrade's answer is read whole: in pieces, not 512 bytes a call
  bhttp::response_parser<bhttp::string_body> answer;
  answer.header_limit(kMaxUpstreamHeader);
  answer.body_limit(kMaxRefusalBody);  // a refused upgrade's answer, read whole; a 101 has none
  dog->arm(us.idle_timeout);
  auto [wec, wn] = co_await bhttp::async_write(u, req, kToken);
  if (wec) failed = bad_gateway("The ERP closed the connection before the upgrade was sent");
  if (!failed) {
    dog->arm(us.response_timeout);
    auto [rec, rn] = co_await bhttp::async_read_header(u, ubuffer, answer, kToken);
    if (!rec && answer.get().result_int() != 101) std::tie(rec, rn) = co_await bhttp::async_read(u, ubuffer, answer, kToken);
    if (rec && dog->fired()) failed = Problem{504, "GatewayTimeout", "The ERP did not answer the upgrade in time", true};
    else if (rec) failed = bad_gateway("The ERP closed the connection without answering the upgrade (" + rec.message() + ")");
  }
  if (failed) {
    dog->stop();
    up.release(std::move(u), where, false);
    co_await answer_and_close(L, s, passage, upstream_problem(*failed, api));
    co_return false;
  }
  auto& res = answer.get();
  passage.status = res.result_int();
  if (!passage.request_id.empty() && res.find("X-Request-Id") == res.end()) res.set("X-Request-Id", passage.request_id);
  if (res.result_int() == 101) {
    dog->arm(L.settings.write);
    bhttp::response_serializer<bhttp::string_body> sr(res);
    auto [hec, hn] = co_await bhttp::async_write_header(s->socket, sr, kToken);
    // What either side sent behind its head belongs to the other.
    const milliseconds idle = us.websocket_idle;
    if (!hec && co_await flush(ubuffer, s->socket, *dog, idle) && co_await flush(buffer, u, *dog, idle))
      co_await (pump(s->socket, u, *dog, idle) || pump(u, s->socket, *dog, idle));
  } else {
    // Refused: the answer as the ERP gave it, and the connection ends (the client asked to leave HTTP).
    drop_hop_by_hop(res);
    res.keep_alive(false);
    res.prepare_payload();
    dog->arm(L.settings.write);
    co_await bhttp::async_write(s->socket, res, kToken);
  }
  dog->stop();
  up.release(std::move(u), where, false);
  co_return false;
}

}  // namespace

asio::awaitable<bool> relay(Listener::Impl& L, std::shared_ptr<Session> s, beast::flat_buffer& buffer, HeadParser& head, Passage& passage,
                            std::size_t served) {
  Upstream& up = *L.upstream;
  const UpstreamSettings& us = up.settings();
  if (websocket_upgrade(head.get())) co_return co_await tunnel(L, std::move(s), buffer, head, passage);
  const bool api = head.get().target().starts_with("/api/");
  if (head.content_length() && *head.content_length() > us.max_body_bytes) {
    co_await answer_and_close(L, s, passage,
                              error_response(413, "RequestEntityTooLarge", "The request body is larger than " + std::to_string(us.max_body_bytes) + " bytes"));
    co_return false;
  }
  BodyParser parser(std::move(head));
  parser.body_limit(us.max_body_bytes);
  Relay r(L, s, buffer, parser, us, served, passage);
  r.note_client(parser.get());
  {
    // The body first (or its first limits.max_body_bytes): whatever is wrong with it is answered
    // before the upstream hears of the request.
    auto dog = std::make_unique<Deadline>(s, nullptr);
    auto stop = co_await r.read_prefix(*dog);
    dog->stop();
    if (stop) {
      if (stop->answer) co_await answer_and_close(L, s, passage, std::move(*stop->answer));
      co_return false;
    }
  }
  Upgraded& req = parser.get();
  forward_head(req, passage, us);
  const auto m = req.method();
  const bool replayable =
      r.whole() && (m == bhttp::verb::get || m == bhttp::verb::head || m == bhttp::verb::put || m == bhttp::verb::delete_ || m == bhttp::verb::options);
  for (int attempt = 0;; ++attempt) {
    // A request read whole and idempotent can be sent again if a kept-alive connection turns out
    // closed: no need to probe the connection first (a system call per relay). Any other is
    // never sent twice (a POST the ERP may have applied before the connection broke).
    auto conn = co_await up.acquire(Upstream::Target::http, !replayable);
    if (!conn) {
      co_await answer_and_close(L, s, passage, upstream_problem(conn.error(), api));
      co_return false;
    }
    tcp::socket u = std::move(conn->socket);
    auto dog = std::make_unique<Deadline>(s, &u);
    Outcome out = co_await r.exchange(req, u, conn->reused, *dog);
    dog->stop();
    up.release(std::move(u), Upstream::Target::http, !out.before_answer && r.upstream_reusable());
    if (out.retry && replayable && attempt == 0) continue;
    if (r.client_failure()) co_await answer_and_close(L, s, passage, *r.client_failure());
    if (out.before_answer) co_await answer_and_close(L, s, passage, upstream_problem(*out.before_answer, api));
    co_return out.client_keep && !out.before_answer && !r.client_failure();
  }
}

}  // namespace pitstop::http
