#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <system_error>

#include "proxy/http/internal.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::http {

namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> refuse(tcp::socket socket) {
  // Over the connection limit: a short answer, no reading, no waiting.
  Response r = error_response(503, "ServiceUnavailable", "Too many open connections; retry shortly");
  std::string out;
  write_head(out, r, false, r.body.size());
  out += r.body;
  asio::steady_timer deadline(socket.get_executor(), std::chrono::seconds(1));
  deadline.async_wait([&socket](error_code ec) {
    if (!ec) socket.cancel();
  });
  co_await asio::async_write(socket, asio::buffer(out), kToken);
  error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

asio::awaitable<void> accept_loop(std::shared_ptr<Listener::Impl> L) {
  while (!L->draining) {
    auto [ec, socket] = co_await L->acceptor.async_accept(kToken);
    if (L->draining) break;
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;
      // Out of descriptors (EMFILE/ENFILE) or a transient error: don't spin on it.
      log::warn("accept failed: ", ec.message());
      asio::steady_timer pause(L->ioc, std::chrono::milliseconds(50));
      co_await pause.async_wait(kToken);
      continue;
    }
    ++L->stats.accepted;
    if (L->sessions.size() >= L->settings.max_connections) {
      ++L->stats.refused;
      asio::co_spawn(L->ioc, refuse(std::move(socket)), asio::detached);
      continue;
    }
    auto session = std::make_shared<Listener::Session>(std::move(socket), L->ioc);
    L->sessions.push_front(session.get());
    session->registry = L->sessions.begin();
    asio::co_spawn(L->ioc, run_session(L, session), [L, session](std::exception_ptr e) {
      if (e) {
        // Nothing on the data plane throws by design; if something did (bad_alloc), drop this
        // connection and keep the worker serving.
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log::error("connection handler failed: ", ex.what());
        } catch (...) {
          log::error("connection handler failed");
        }
        error_code ignored;
        session->socket.close(ignored);
      }
      L->sessions.erase(session->registry);
      L->session_ended();
    });
  }
}

}  // namespace

void Listener::Impl::sweep() {
  if (sweeping) return;
  sweeping = true;
  sweeper.expires_after(kSweepInterval);
  sweeper.async_wait([self = shared_from_this()](error_code ec) {
    self->sweeping = false;
    if (ec) return;
    const auto now = std::chrono::steady_clock::now();
    for (auto* s : self->sessions) {
      if (s->deadline <= now) {
        s->deadline = std::chrono::steady_clock::time_point::max();
        s->timed_out = true;
        error_code ignored;
        s->socket.cancel(ignored);
        if (s->relayed) s->relayed->cancel(ignored);
      }
    }
    // Sweep on while anything could time out: the listener is open or connections remain.
    if (self->acceptor.is_open() || !self->sessions.empty()) self->sweep();
  });
}

void Listener::Impl::session_ended() {
  if (draining && sessions.empty() && on_drained) {
    auto done = std::move(on_drained);
    on_drained = nullptr;
    done();
  }
}

Listener::Listener(asio::io_context& ioc, Settings settings, Handler& handler, Upstream* upstream)
    : impl_(std::make_shared<Impl>(ioc, settings, handler, upstream)) {}

asio::awaitable<Passage> Handler::pass(const Request& head) {
  co_return Passage{std::nullopt, head.peer().address().to_string()};
}

Listener::~Listener() {
  error_code ec;
  impl_->sweeper.cancel();
  impl_->acceptor.close(ec);
  for (auto* s : impl_->sessions) s->socket.close(ec);
}

void Listener::bind(const tcp::endpoint& endpoint) {
  auto& a = impl_->acceptor;
  a.open(endpoint.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  // Every worker binds the same address; the kernel spreads connections over them.
  a.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
  a.bind(endpoint);
  a.listen(asio::socket_base::max_listen_connections);
}

std::uint16_t Listener::port() const { return impl_->acceptor.local_endpoint().port(); }

void Listener::start() {
  impl_->sweep();
  asio::co_spawn(impl_->ioc, accept_loop(impl_), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("accept loop failed: ", ex.what());
      }
    }
  });
}

void Listener::drain(std::function<void()> done) {
  auto& L = *impl_;
  L.draining = true;
  L.on_drained = std::move(done);
  error_code ec;
  L.acceptor.close(ec);
  // Idle keep-alive connections have nothing in flight: close them now. The others finish the
  // request they are on and close after its response.
  for (auto* s : L.sessions)
    if (s->state == Session::State::idle) s->socket.cancel(ec);
  if (L.sessions.empty()) L.session_ended();
}

void Listener::abort_all() {
  error_code ec;
  impl_->sweeper.cancel();
  impl_->acceptor.close(ec);
  for (auto* s : impl_->sessions) s->socket.close(ec);
}

std::size_t Listener::connections() const { return impl_->sessions.size(); }
const ListenerStats& Listener::stats() const { return impl_->stats; }

}  // namespace pitstop::http
