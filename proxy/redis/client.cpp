#include "proxy/redis/client.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/log/log.hpp"
#include "proxy/redis/watch.hpp"

namespace pitstop::redis {

namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::result;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
constexpr milliseconds kMinBackoff{50};

Reply copy_reply(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(copy_reply(r->element[i]));
      break;
    default:
      out.type = Reply::Type::nil;
      break;
  }
  return out;
}

// The replies of one command() or pipeline() call. The timer is both the deadline and the wake-up:
// the last reply (or a failure) cancels it.
struct Batch {
  Batch(asio::io_context& ioc, std::size_t n) : timer(ioc), replies(n), remaining(n) {}
  asio::steady_timer timer;
  std::vector<Reply> replies;
  std::size_t remaining;
  error_code ec;
  bool finished = false;

  void finish(error_code e) {
    if (finished) return;
    finished = true;
    ec = e;
    timer.cancel();
  }
};

struct Slot {
  std::shared_ptr<Batch> batch;
  std::size_t index;
};

void on_reply(redisAsyncContext*, void* r, void* privdata) {
  std::unique_ptr<Slot> slot(static_cast<Slot*>(privdata));
  Batch& b = *slot->batch;
  if (b.finished) return;
  if (!r) {
    b.finish(errc::connection_lost);
    return;
  }
  b.replies[slot->index] = copy_reply(static_cast<redisReply*>(r));
  if (--b.remaining == 0) b.finish({});
}

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  enum class State { idle, connecting, ready, backoff, stopped };

  Impl(asio::io_context& ioc, config::Redis settings, std::string name)
      : ioc(ioc), cfg(std::move(settings)), name(std::move(name)), resolver(ioc), connect_timer(ioc),
        backoff_timer(ioc) {}

  asio::io_context& ioc;
  config::Redis cfg;
  std::string name;
  asio::ip::tcp::resolver resolver;
  asio::steady_timer connect_timer;
  asio::steady_timer backoff_timer;
  redisAsyncContext* ac = nullptr;
  State state = State::idle;
  std::uint64_t generation = 0;
  milliseconds backoff{0};
  std::vector<std::shared_ptr<asio::steady_timer>> ready_waiters;
  std::string last_error;
  Stats stats;
  metrics::Histogram* latency = nullptr;  // round trips observed there, when set
  bool logged_down = false;
  struct Subscription {
    std::vector<std::string> channels;
    std::function<void(std::string_view, std::string_view)> on_message;
    std::function<void(bool)> on_state;
    bool active = false;
  };
  std::optional<Subscription> sub;

  void wake_waiters() {
    auto waiters = std::move(ready_waiters);
    ready_waiters.clear();
    for (auto& t : waiters) t->cancel();
  }

  void start_connect() {
    if (state == State::stopped || state == State::connecting || state == State::ready) return;
    state = State::connecting;
    const std::uint64_t gen = ++generation;
    connect_timer.expires_after(cfg.connect_timeout);
    connect_timer.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || self->generation != gen || self->state != State::connecting) return;
      self->resolver.cancel();
      self->fail_connection("connect timed out after " + std::to_string(self->cfg.connect_timeout.count()) + " ms");
    });
    // hiredis resolves names with a blocking getaddrinfo: resolve here and hand it an address.
    resolver.async_resolve(cfg.host, std::to_string(cfg.port),
                           [self = shared_from_this(), gen](error_code ec, asio::ip::tcp::resolver::results_type rs) {
                             if (self->generation != gen || self->state != State::connecting) return;
                             if (ec || rs.empty()) {
                               self->fail_connection("cannot resolve " + self->cfg.host + ": " + ec.message());
                               return;
                             }
                             self->open(rs.begin()->endpoint().address().to_string(), gen);
                           });
  }

  void open(const std::string& ip, std::uint64_t) {
    redisAsyncContext* c = redisAsyncConnect(ip.c_str(), cfg.port);
    if (!c) {
      fail_connection("out of memory");
      return;
    }
    if (c->err) {
      std::string why = c->errstr;
      redisAsyncFree(c);
      fail_connection(why);
      return;
    }
    c->data = this;
    // Hooks first: setting the connect callback arms a write wait.
    detail::attach(ioc, c);
    ac = c;
    redisAsyncSetDisconnectCallback(c, &Impl::on_disconnect);
    redisAsyncSetConnectCallback(c, &Impl::on_connect);
  }

  static void on_connect(const redisAsyncContext* c, int status) {
    auto* self = static_cast<Impl*>(c->data);
    if (status != REDIS_OK) {
      // hiredis frees the context after this callback.
      self->ac = nullptr;
      self->fail_connection(c->errstr);
      return;
    }
    self->connect_timer.cancel();
    self->state = State::ready;
    self->backoff = milliseconds(0);
    ++self->stats.connects;
    if (self->logged_down) log::info("redis ", self->name, ": connected to ", self->cfg.host, ":", self->cfg.port);
    self->logged_down = false;
    // Sent before anything else on this connection: replies come in order, so every user command
    // runs authenticated and on the right database.
    auto* ctx = const_cast<redisAsyncContext*>(c);
    if (!self->cfg.password.empty()) {
      std::vector<std::string> args{"AUTH"};
      if (!self->cfg.username.empty()) args.push_back(self->cfg.username);
      args.push_back(self->cfg.password);
      self->send_setup(ctx, args);
    }
    if (self->cfg.db != 0) self->send_setup(ctx, {"SELECT", std::to_string(self->cfg.db)});
    if (self->sub) self->send_subscribe(ctx);
    self->wake_waiters();
  }

  void send_subscribe(redisAsyncContext* c) {
    std::vector<const char*> argv{"SUBSCRIBE"};
    std::vector<std::size_t> lens{9};
    for (const auto& ch : sub->channels) {
      argv.push_back(ch.data());
      lens.push_back(ch.size());
    }
    redisAsyncCommandArgv(c, &Impl::on_push, this, static_cast<int>(argv.size()), argv.data(), lens.data());
  }

  // The subscription's replies: one confirmation per channel, then one array per message; NULL
  // when the connection is gone.
  static void on_push(redisAsyncContext* c, void* r, void*) {
    auto* self = static_cast<Impl*>(c->data);
    if (!self->sub) return;
    if (!r) {
      if (self->sub->active && self->sub->on_state) self->sub->on_state(false);
      self->sub->active = false;
      return;
    }
    auto* reply = static_cast<redisReply*>(r);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || reply->element[0]->type != REDIS_REPLY_STRING) return;
    std::string_view kind(reply->element[0]->str, reply->element[0]->len);
    if (kind == "subscribe") {
      // The third element counts this connection's subscriptions: active once all are made.
      const auto& n = *reply->element[2];
      if (n.type == REDIS_REPLY_INTEGER && static_cast<std::size_t>(n.integer) == self->sub->channels.size() && !self->sub->active) {
        self->sub->active = true;
        if (self->sub->on_state) self->sub->on_state(true);
      }
    } else if (kind == "message" && reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_STRING) {
      if (self->sub->on_message)
        self->sub->on_message(std::string_view(reply->element[1]->str, reply->element[1]->len),
                              std::string_view(reply->element[2]->str, reply->element[2]->len));
    }
  }

  void send_setup(redisAsyncContext* c, const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAsyncCommandArgv(c, &Impl::on_setup_reply, this, static_cast<int>(argv.size()), argv.data(), lens.data());
  }

  static void on_setup_reply(redisAsyncContext* c, void* r, void*) {
    if (!r) return;
    auto* reply = static_cast<redisReply*>(r);
    if (reply->type == REDIS_REPLY_ERROR) {
      auto* self = static_cast<Impl*>(c->data);
      std::string why = std::string("AUTH/SELECT refused: ") + std::string(reply->str, reply->len);
      // Not from inside hiredis's callback: the context is in use.
      asio::post(self->ioc, [s = self->shared_from_this(), why] { s->fail_connection(why); });
    }
  }

  static void on_disconnect(const redisAsyncContext* c, int status) {
    auto* self = static_cast<Impl*>(c->data);
    if (self->sub && self->sub->active) {
      self->sub->active = false;
      if (self->sub->on_state) self->sub->on_state(false);
    }
    if (self->ac == c) self->ac = nullptr;
    ++self->stats.disconnects;
    if (status != REDIS_OK && c->errstr[0]) self->last_error = c->errstr;
    if (self->state != State::stopped) self->schedule_reconnect();
  }

  // Drops the current connection (failing what is in flight) and reconnects after a backoff.
  void fail_connection(const std::string& why) {
    if (state == State::stopped) return;
    last_error = why;
    if (redisAsyncContext* c = ac) {
      ac = nullptr;
      redisAsyncFree(c);  // pending callbacks run with NULL replies; may call on_disconnect
    }
    schedule_reconnect();
  }

  void schedule_reconnect() {
    if (state == State::stopped || state == State::backoff) return;
    state = State::backoff;
    connect_timer.cancel();
    if (!logged_down) log::warn("redis ", name, " (", cfg.host, ":", cfg.port, "): ", last_error, "; reconnecting");
    logged_down = true;
    wake_waiters();
    backoff = std::min(std::max(backoff * 2, kMinBackoff), std::max(cfg.reconnect_max_backoff, kMinBackoff));
    backoff_timer.expires_after(backoff);
    backoff_timer.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->state != State::backoff) return;
      self->state = State::idle;
      self->start_connect();
    });
  }

  void stop() {
    if (state == State::stopped) return;
    state = State::stopped;
    ++generation;
    connect_timer.cancel();
    backoff_timer.cancel();
    resolver.cancel();
    if (redisAsyncContext* c = ac) {
      ac = nullptr;
      redisAsyncFree(c);
    }
    wake_waiters();
  }

  // Waits (until `deadline`) for a usable connection.
  asio::awaitable<error_code> ensure_ready(steady_clock::time_point deadline) {
    auto self = shared_from_this();
    if (state == State::ready) co_return error_code{};
    if (state == State::stopped) co_return errc::stopped;
    // During backoff the server was just found unreachable: answer at once rather than make every
    // request wait for a connection that is not coming.
    if (state == State::backoff) co_return errc::not_connected;
    if (state == State::idle) start_connect();
    auto t = std::make_shared<asio::steady_timer>(ioc, deadline);
    ready_waiters.push_back(t);
    co_await t->async_wait(kToken);
    if (state == State::ready) co_return error_code{};
    co_return state == State::stopped ? errc::stopped : errc::not_connected;
  }

  // Sends `n` commands; `fill(i, argv, lens)` describes command i.
  template <class Fill>
  asio::awaitable<result<std::vector<Reply>>> execute(std::size_t n, Fill fill) {
    auto self = shared_from_this();
    const auto deadline = steady_clock::now() + cfg.command_timeout;
    if (auto ec = co_await ensure_ready(deadline)) co_return ec;
    const auto sent = steady_clock::now();
    auto batch = std::make_shared<Batch>(ioc, n);
    batch->timer.expires_at(deadline);
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (std::size_t i = 0; i < n && !batch->finished; ++i) {
      argv.clear();
      lens.clear();
      fill(i, argv, lens);
      auto* slot = new Slot{batch, i};
      if (!ac || redisAsyncCommandArgv(ac, &on_reply, slot, static_cast<int>(argv.size()), argv.data(),
                                       lens.data()) != REDIS_OK) {
        // hiredis will never call back for this one.
        delete slot;
        batch->finish(errc::rejected);
      }
    }
    stats.commands += n;
    if (!batch->finished) co_await batch->timer.async_wait(kToken);
    if (!batch->finished) {
      batch->finished = true;
      ++stats.timeouts;
      // Its reply may still come and would be taken for the next command's: drop the connection.
      fail_connection("command timed out after " + std::to_string(cfg.command_timeout.count()) + " ms");
      co_return errc::timeout;
    }
    if (batch->ec) co_return batch->ec;
    if (latency) latency->observe(std::chrono::duration<double>(steady_clock::now() - sent).count());
    co_return std::move(batch->replies);
  }
};

Client::Client(asio::io_context& ioc, config::Redis settings, std::string name)
    : impl_(std::make_shared<Impl>(ioc, std::move(settings), std::move(name))) {}

Client::~Client() { impl_->stop(); }

void Client::start() {
  if (impl_->state == Impl::State::idle) impl_->start_connect();
}

void Client::stop() { impl_->stop(); }

asio::awaitable<result<Reply>> Client::command(std::span<const std::string_view> args) {
  auto r = co_await impl_->execute(1, [&](std::size_t, std::vector<const char*>& argv, std::vector<std::size_t>& lens) {
    for (auto a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
  });
  if (!r) co_return r.error();
  co_return std::move(r->front());
}

asio::awaitable<result<std::vector<Reply>>> Client::pipeline(std::span<const Command> commands) {
  if (commands.empty()) co_return std::vector<Reply>{};
  co_return co_await impl_->execute(commands.size(), [&](std::size_t i, std::vector<const char*>& argv,
                                                         std::vector<std::size_t>& lens) {
    for (const auto& a : commands[i]) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
  });
}

Script::Script(std::string source) : source_(std::move(source)) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(source_.data(), source_.size(), digest, &len, EVP_sha1(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    sha1_.push_back(kHex[digest[i] >> 4]);
    sha1_.push_back(kHex[digest[i] & 0xF]);
  }
}

asio::awaitable<result<Reply>> Client::eval(const Script& script, std::span<const std::string_view> keys,
                                            std::span<const std::string_view> args) {
  const std::string numkeys = std::to_string(keys.size());
  std::vector<std::string_view> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(numkeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = co_await command(argv);
  if (r && r->is_error() && r->str.rfind("NOSCRIPT", 0) == 0) {
    // Redis restarted or was flushed: send the source once; it is cached again after this.
    argv[0] = "EVAL";
    argv[1] = script.source();
    r = co_await command(argv);
  }
  co_return r;
}

void Client::subscribe(std::vector<std::string> channels, std::function<void(std::string_view, std::string_view)> on_message,
                       std::function<void(bool)> on_state) {
  impl_->sub = Impl::Subscription{std::move(channels), std::move(on_message), std::move(on_state), false};
  if (impl_->state == Impl::State::ready && impl_->ac) {
    impl_->send_subscribe(impl_->ac);
    return;
  }
  impl_->start_connect();
}

bool Client::subscribed() const { return impl_->sub && impl_->sub->active; }

bool Client::connected() const { return impl_->state == Impl::State::ready; }
const std::string& Client::last_error() const { return impl_->last_error; }
const Stats& Client::stats() const { return impl_->stats; }
void Client::set_latency(metrics::Histogram* h) { impl_->latency = h; }
const std::string& Client::name() const { return impl_->name; }

}  // namespace pitstop::redis
