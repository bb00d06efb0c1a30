#pragma once
// Shared between server.cpp (accepting) and session.cpp (serving one connection).
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <list>
#include <string>

#include "proxy/http/http.hpp"

namespace pitstop::http {

// One client connection. Owned by a shared_ptr held by its coroutine and its deadline handler.
struct Listener::Session {
  Session(boost::asio::ip::tcp::socket s, boost::asio::io_context& ioc) : socket(std::move(s)), timer(ioc) {}
  enum class State { idle, reading, handling, writing };
  boost::asio::ip::tcp::socket socket;
  boost::asio::steady_timer timer;  // the deadline of the current read or write
  State state = State::idle;
  bool timed_out = false;
  std::uint64_t op = 0;
  std::list<Listener::Session*>::iterator registry;
};

struct Listener::Impl : std::enable_shared_from_this<Listener::Impl> {
  Impl(boost::asio::io_context& ioc, Settings s, Handler& h) : ioc(ioc), settings(s), handler(h), acceptor(ioc) {}
  boost::asio::io_context& ioc;
  Settings settings;
  Handler& handler;
  boost::asio::ip::tcp::acceptor acceptor;
  std::list<Session*> sessions;
  bool draining = false;
  std::function<void()> on_drained;
  ListenerStats stats;

  void session_ended();
};

boost::asio::awaitable<void> run_session(std::shared_ptr<Listener::Impl> listener,
                                         std::shared_ptr<Listener::Session> session);

// Serialises a response head (status line and header fields) for HTTP/1.1.
void write_head(std::string& out, const Response& r, bool keep_alive, std::size_t content_length);
const char* reason_phrase(unsigned status);

}  // namespace pitstop::http
