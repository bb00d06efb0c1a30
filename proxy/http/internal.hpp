#pragma once
// Shared between server.cpp (accepting) and session.cpp (serving one connection).
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <list>
#include <string>

#include "proxy/http/http.hpp"

namespace pitstop::http {

// One client connection, owned by its coroutine. Its deadline is checked by the listener's
// sweeper (a timer per connection would cost two timer-queue operations per read and write).
struct Listener::Session {
  Session(boost::asio::ip::tcp::socket s, boost::asio::io_context&) : socket(std::move(s)) {}
  enum class State { idle, reading, handling, writing };
  boost::asio::ip::tcp::socket socket;
  State state = State::idle;
  bool timed_out = false;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::list<Listener::Session*>::iterator registry;
  // The upstream connection of a relay in progress: past the deadline, its operations are
  // cancelled too (one deadline covers both sides of a relay, at the cost of a store per step).
  boost::asio::ip::tcp::socket* relayed = nullptr;
};

struct Listener::Impl : std::enable_shared_from_this<Listener::Impl> {
  Impl(boost::asio::io_context& ioc, Settings s, Handler& h, Upstream* u)
      : ioc(ioc), settings(s), handler(h), upstream(u), acceptor(ioc), sweeper(ioc) {}
  boost::asio::io_context& ioc;
  Settings settings;
  Handler& handler;
  Upstream* upstream;
  boost::asio::ip::tcp::acceptor acceptor;
  boost::asio::steady_timer sweeper;  // cancels the operations of sessions past their deadline
  bool sweeping = false;
  std::list<Session*> sessions;
  bool draining = false;
  std::function<void()> on_drained;
  ListenerStats stats;

  void session_ended();
  void sweep();
};

// Sets the session's deadline for one read or write; past it, the sweeper cancels the pending
// operations of its socket (and of the relayed one), not the socket closed, so that an error
// answer can still be written.
inline void arm(const std::shared_ptr<Listener::Session>& s, std::chrono::milliseconds d) {
  s->timed_out = false;
  s->deadline = std::chrono::steady_clock::now() + d;
}
inline void disarm(const std::shared_ptr<Listener::Session>& s) { s->deadline = std::chrono::steady_clock::time_point::max(); }

// How often deadlines are checked: a timeout fires at most this late.
inline constexpr std::chrono::milliseconds kSweepInterval{20};

boost::asio::awaitable<void> run_session(std::shared_ptr<Listener::Impl> listener,
                                         std::shared_ptr<Listener::Session> session);

// Serialises a response head (status line and header fields) for HTTP/1.1.
void write_head(std::string& out, const Response& r, bool keep_alive, std::size_t content_length);
const char* reason_phrase(unsigned status);

}  // namespace pitstop::http
