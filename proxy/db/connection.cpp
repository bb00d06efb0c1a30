#include <mysql.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstring>
#include <list>
#include <unordered_map>

#include "proxy/db/db.hpp"

namespace pitstop::db {

namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxCachedStatements = 256;

bool is_connection_error(unsigned code) {
  // 2xxx are client-side errors (server gone, lost, bad handshake, out of sync…); the others
  // mean the server ended this session: after any of them the connection is useless.
  return (code >= 2000 && code < 3000) || code == 1053 /* shutdown in progress */ ||
         code == 1927 /* connection killed */ || code == 4031 /* idle timeout */;
}

Kind kind_of(const MYSQL_FIELD& f) {
  switch (f.type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
      return (f.flags & UNSIGNED_FLAG) ? Kind::unsigned_integer : Kind::integer;
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
      return Kind::decimal;
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
      return Kind::floating;
    case MYSQL_TYPE_DATE:
    case MYSQL_TYPE_NEWDATE:
      return Kind::date;
    case MYSQL_TYPE_DATETIME:
    case MYSQL_TYPE_TIMESTAMP:
      return Kind::datetime;
    case MYSQL_TYPE_TIME:
      return Kind::time;
    case MYSQL_TYPE_NULL:
      return Kind::null;
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
      return f.charsetnr == 63 ? Kind::blob : Kind::string;
    default:
      return Kind::string;
  }
}

std::vector<Column> columns_of(MYSQL_FIELD* fields, unsigned n) {
  std::vector<Column> cols;
  cols.reserve(n);
  for (unsigned i = 0; i < n; ++i) cols.push_back({std::string(fields[i].name, fields[i].name_length), kind_of(fields[i])});
  return cols;
}

}  // namespace

struct Connection::Impl : std::enable_shared_from_this<Connection::Impl> {
  explicit Impl(asio::io_context& ioc) : ioc(ioc), sd(ioc), timer(ioc) {}
  metrics::Histogram* latency = nullptr;  // the worker's, when it counts statements
  std::chrono::steady_clock::time_point began{};

  ~Impl() {
    if (!m) return;
    // Reached without a completed close(): shut the socket down first so that nothing below can
    // block on the server, then free the statements and the handle.
    mariadb_cancel(m);
    for (auto& [sql, entry] : statements) {
      (void)sql;
      mysql_stmt_close(entry.stmt);
    }
    statements.clear();
    if (sd.is_open()) sd.release();  // the fd is the library's to close
    mysql_close(m);
  }

  asio::io_context& ioc;
  MYSQL* m = nullptr;
  asio::posix::stream_descriptor sd;
  asio::steady_timer timer;
  std::uint64_t op = 0;  // identifies the operation the deadline belongs to
  bool op_active = false;
  bool timed_out = false;
  bool broken = false;
  int last_status = 0;  // of the last drive(): 0 when the library call finished

  struct Cached {
    MYSQL_STMT* stmt;
    std::list<std::string>::iterator lru;
  };
  std::unordered_map<std::string, Cached> statements;
  std::list<std::string> lru;  // most recent first

  // Arms the deadline of one public operation (several library calls).
  void begin(milliseconds timeout) {
    began = std::chrono::steady_clock::now();
    ++op;
    op_active = true;
    timed_out = false;
    timer.expires_after(timeout);
    timer.async_wait([weak = weak_from_this(), id = op](error_code ec) {
      if (ec) return;
      auto self = weak.lock();
      if (!self || !self->op_active || self->op != id) return;
      self->timed_out = true;
      error_code ignored;
      self->sd.cancel(ignored);
    });
  }

  void end() {
    op_active = false;
    timer.cancel();
    if (latency) latency->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
  }

  Error error_from(unsigned code, const char* message) {
    Error e;
    e.server_code = code;
    e.message = message ? message : "";
    if (is_connection_error(code)) {
      broken = true;
      e.code = errc::connection_lost;
    } else {
      e.code = errc::server;
    }
    return e;
  }

  Error mysql_error_now() { return error_from(mysql_errno(m), mysql_error(m)); }

  Error stmt_error(MYSQL_STMT* s) { return error_from(mysql_stmt_errno(s), mysql_stmt_error(s)); }

  Error timeout_error() {
    Error e;
    e.code = errc::timeout;
    e.message = "MariaDB operation timed out";
    return e;
  }

  // Runs one non-blocking library call to completion: `start()` gives the first wait status and
  // `cont(ready)` the next. Returns false when the deadline passed or the socket failed; the
  // call is then aborted (socket shut down, call run to its failing end) and the connection is
  // broken.
  template <class Start, class Cont>
  asio::awaitable<bool> drive(Start start, Cont cont) {
    auto self = shared_from_this();
    int status = start();
    while (status != 0) {
      if (timed_out) break;
      int ready = 0;
      if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT)) {
        const bool want_write = (status & MYSQL_WAIT_WRITE) && !(status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT));
        auto [ec] = co_await sd.async_wait(
            want_write ? asio::posix::descriptor_base::wait_write : asio::posix::descriptor_base::wait_read, kToken);
        if (timed_out || ec) break;
        ready = want_write ? MYSQL_WAIT_WRITE : (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT));
      } else if (status & MYSQL_WAIT_TIMEOUT) {
        // A library-internal timer (none is configured, but honour it if the library asks).
        asio::steady_timer t(ioc, milliseconds(mysql_get_timeout_value_ms(m)));
        co_await t.async_wait(kToken);
        if (timed_out) break;
        ready = MYSQL_WAIT_TIMEOUT;
      }
      status = cont(ready);
    }
    last_status = status;
    if (status == 0) co_return true;
    // Abort: shut the socket down so that every further read or write fails at once, then let
    // the library unwind its call.
    broken = true;
    mariadb_cancel(m);
    for (int guard = 0; status != 0 && guard < 64; ++guard) status = cont(MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
    last_status = status;
    co_return false;
  }

  void close_statement_now(MYSQL_STMT* s) {
    // COM_STMT_CLOSE expects no answer: a small write that does not wait on the server.
    mysql_stmt_close(s);
  }

  asio::awaitable<Result<MYSQL_STMT*>> prepared(std::string_view sql) {
    std::string key(sql);
    if (auto it = statements.find(key); it != statements.end()) {
      lru.splice(lru.begin(), lru, it->second.lru);
      co_return it->second.stmt;
    }
    MYSQL_STMT* s = mysql_stmt_init(m);
    if (!s) co_return Error{errc::protocol, 0, "out of memory"};
    my_bool update_max = 1;
    mysql_stmt_attr_set(s, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max);
    int err = 0;
    bool ok = co_await drive([&] { return mysql_stmt_prepare_start(&err, s, sql.data(), sql.size()); },
                             [&](int st) { return mysql_stmt_prepare_cont(&err, s, st); });
    if (!ok) {
      mysql_stmt_close(s);
      co_return timeout_error();
    }
    if (err) {
      Error e = stmt_error(s);
      mysql_stmt_close(s);
      co_return e;
    }
    if (statements.size() >= kMaxCachedStatements) {
      const std::string& victim = lru.back();
      close_statement_now(statements[victim].stmt);
      statements.erase(victim);
      lru.pop_back();
    }
    lru.push_front(key);
    statements.emplace(std::move(key), Cached{s, lru.begin()});
    co_return s;
  }
};

Connection::Connection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Connection::~Connection() = default;

bool Connection::broken() const { return impl_->broken; }
std::uint64_t Connection::server_thread_id() const { return impl_->m ? mysql_thread_id(impl_->m) : 0; }
std::size_t Connection::cached_statements() const { return impl_->statements.size(); }

asio::awaitable<Result<std::unique_ptr<Connection>>> Connection::open(asio::io_context& ioc,
                                                                      const config::MariaDb& server,
                                                                      milliseconds timeout) {
  auto impl = std::make_shared<Impl>(ioc);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Connector/C would resolve names with a blocking getaddrinfo: resolve here.
  asio::ip::tcp::resolver resolver(ioc);
  asio::steady_timer resolve_deadline(ioc, deadline);
  resolve_deadline.async_wait([&resolver](error_code ec) {
    if (!ec) resolver.cancel();
  });
  auto [rec, endpoints] = co_await resolver.async_resolve(server.host, std::to_string(server.port), kToken);
  resolve_deadline.cancel();
  if (rec || endpoints.empty())
    co_return Error{errc::connect_failed, 0, "cannot resolve " + server.host + ": " + rec.message()};
  const std::string ip = endpoints.begin()->endpoint().address().to_string();

  impl->m = mysql_init(nullptr);
  if (!impl->m) co_return Error{errc::connect_failed, 0, "out of memory"};
  MYSQL* m = impl->m;
  mysql_options(m, MYSQL_OPT_NONBLOCK, nullptr);
  unsigned protocol = MYSQL_PROTOCOL_TCP;
  mysql_options(m, MYSQL_OPT_PROTOCOL, &protocol);
  mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  my_bool reconnect = 0;  // a silent reconnect would lose prepared statements and transactions
  mysql_options(m, MYSQL_OPT_RECONNECT, &reconnect);
  // pitstop writes its own outbox rows: the invalidation triggers skip its connections.
  mysql_options(m, MYSQL_INIT_COMMAND, "SET @pitstop_write = 1");

  auto remaining = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
  if (remaining.count() <= 0) co_return Error{errc::connect_failed, 0, "connect timed out while resolving"};

  MYSQL* ret = nullptr;
  int first = mysql_real_connect_start(&ret, m, ip.c_str(), server.user.c_str(), server.password.c_str(),
                                       server.database.c_str(), server.port, nullptr, 0);
  if (first != 0) {
    // The socket exists only now; it stays the library's (released before mysql_close).
    error_code ec;
    impl->sd.assign(mysql_get_socket(m), ec);
    if (ec) co_return Error{errc::connect_failed, 0, "cannot watch the MariaDB socket: " + ec.message()};
    impl->begin(remaining);
    bool ok = co_await impl->drive([&] { return first; },
                                   [&](int st) { return mysql_real_connect_cont(&ret, m, st); });
    impl->end();
    if (!ok)
      co_return Error{errc::connect_failed, 0,
                      "connect to " + server.host + ":" + std::to_string(server.port) + " timed out after " +
                          std::to_string(timeout.count()) + " ms"};
  }
  if (!ret) {
    impl->broken = true;
    co_return Error{errc::connect_failed, mysql_errno(m), mysql_error(m)};
  }
  if (!impl->sd.is_open()) {
    error_code ec;
    impl->sd.assign(mysql_get_socket(m), ec);
    if (ec) co_return Error{errc::connect_failed, 0, "cannot watch the MariaDB socket: " + ec.message()};
  }
  co_return std::make_unique<Connection>(std::move(impl));
}

asio::awaitable<Result<ResultSet>> Connection::query(std::string_view sql, milliseconds timeout) {
  auto impl = impl_;
  MYSQL* m = impl->m;
  if (impl->broken) co_return Error{errc::connection_lost, 0, "connection is broken"};
  impl->begin(timeout);
  struct EndGuard {
    Impl* i;
    ~EndGuard() { i->end(); }
  } guard{impl.get()};
  int err = 0;
  if (!co_await impl->drive([&] { return mysql_real_query_start(&err, m, sql.data(), sql.size()); },
                            [&](int st) { return mysql_real_query_cont(&err, m, st); }))
    co_return impl->timeout_error();
  if (err) co_return impl->mysql_error_now();
  MYSQL_RES* res = nullptr;
  if (!co_await impl->drive([&] { return mysql_store_result_start(&res, m); },
                            [&](int st) { return mysql_store_result_cont(&res, m, st); }))
    co_return impl->timeout_error();
  ResultSet out;
  if (!res) {
    if (mysql_field_count(m) != 0) co_return impl->mysql_error_now();
    out.affected_rows = mysql_affected_rows(m);
    out.insert_id = mysql_insert_id(m);
    co_return out;
  }
  const unsigned n = mysql_num_fields(res);
  out.columns = columns_of(mysql_fetch_fields(res), n);
  out.rows.reserve(mysql_num_rows(res));
  // The result is stored client-side: fetching does no I/O.
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long* lengths = mysql_fetch_lengths(res);
    auto& r = out.rows.emplace_back();
    r.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      if (row[i]) r.emplace_back(std::string(row[i], lengths[i]));
      else r.emplace_back(std::nullopt);
    }
  }
  mysql_free_result(res);
  co_return out;
}

asio::awaitable<Result<ResultSet>> Connection::execute(std::string_view sql, std::span<const Param> params,
                                                       milliseconds timeout) {
  auto impl = impl_;
  if (impl->broken) co_return Error{errc::connection_lost, 0, "connection is broken"};
  impl->begin(timeout);
  struct EndGuard {
    Impl* i;
    ~EndGuard() { i->end(); }
  } guard{impl.get()};
  auto prepared = co_await impl->prepared(sql);
  if (!prepared) co_return prepared.error();
  MYSQL_STMT* s = *prepared;
  if (mysql_stmt_param_count(s) != params.size())
    co_return Error{errc::protocol, 0,
                    "statement has " + std::to_string(mysql_stmt_param_count(s)) + " placeholders, " +
                        std::to_string(params.size()) + " values given"};
  std::vector<MYSQL_BIND> binds(params.size());
  std::vector<long long> ints(params.size());
  std::vector<double> doubles(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    MYSQL_BIND& b = binds[i];
    std::memset(&b, 0, sizeof b);
    if (std::holds_alternative<std::nullptr_t>(params[i])) {
      b.buffer_type = MYSQL_TYPE_NULL;
    } else if (auto* iv = std::get_if<std::int64_t>(&params[i])) {
      ints[i] = *iv;
      b.buffer_type = MYSQL_TYPE_LONGLONG;
      b.buffer = &ints[i];
    } else if (auto* dv = std::get_if<double>(&params[i])) {
      doubles[i] = *dv;
      b.buffer_type = MYSQL_TYPE_DOUBLE;
      b.buffer = &doubles[i];
    } else {
      auto sv = std::get<std::string_view>(params[i]);
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = const_cast<char*>(sv.data());
      b.buffer_length = sv.size();
    }
  }
  if (!binds.empty() && mysql_stmt_bind_param(s, binds.data())) co_return impl->stmt_error(s);
  int err = 0;
  if (!co_await impl->drive([&] { return mysql_stmt_execute_start(&err, s); },
                            [&](int st) { return mysql_stmt_execute_cont(&err, s, st); }))
    co_return impl->timeout_error();
  if (err) co_return impl->stmt_error(s);

  ResultSet out;
  MYSQL_RES* meta = mysql_stmt_result_metadata(s);
  if (!meta) {
    out.affected_rows = mysql_stmt_affected_rows(s);
    out.insert_id = mysql_stmt_insert_id(s);
    co_return out;
  }
  struct MetaGuard {
    MYSQL_RES* r;
    MYSQL_STMT* s;
    ~MetaGuard() {
      mysql_free_result(r);
      mysql_stmt_free_result(s);
    }
  } meta_guard{meta, s};
  if (!co_await impl->drive([&] { return mysql_stmt_store_result_start(&err, s); },
                            [&](int st) { return mysql_stmt_store_result_cont(&err, s, st); }))
    co_return impl->timeout_error();
  if (err) co_return impl->stmt_error(s);

  const unsigned n = mysql_num_fields(meta);
  MYSQL_FIELD* fields = mysql_fetch_fields(meta);
  out.columns = columns_of(fields, n);
  // Every column is fetched as text, sized by the longest value in this result.
  std::vector<MYSQL_BIND> rb(n);
  std::vector<std::vector<char>> buffers(n);
  std::vector<unsigned long> lengths(n);
  std::vector<my_bool> nulls(n), errors(n);
  for (unsigned i = 0; i < n; ++i) {
    std::size_t size = std::max<std::size_t>(fields[i].max_length, 64) + 1;
    buffers[i].resize(size);
    std::memset(&rb[i], 0, sizeof rb[i]);
    rb[i].buffer_type = MYSQL_TYPE_STRING;
    rb[i].buffer = buffers[i].data();
    rb[i].buffer_length = size;
    rb[i].length = &lengths[i];
    rb[i].is_null = &nulls[i];
    rb[i].error = &errors[i];
  }
  if (n > 0 && mysql_stmt_bind_result(s, rb.data())) co_return impl->stmt_error(s);
  out.rows.reserve(mysql_stmt_num_rows(s));
  while (true) {
    int rc = mysql_stmt_fetch(s);
    if (rc == MYSQL_NO_DATA) break;
    if (rc == 1) co_return impl->stmt_error(s);
    auto& row = out.rows.emplace_back();
    row.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
      if (nulls[i]) {
        row.emplace_back(std::nullopt);
        continue;
      }
      if (lengths[i] <= buffers[i].size()) {
        row.emplace_back(std::string(buffers[i].data(), lengths[i]));
        continue;
      }
      // Longer than max_length promised (a conversion to text grew): fetch the whole value.
      std::string big(lengths[i], '\0');
      MYSQL_BIND one;
      std::memset(&one, 0, sizeof one);
      unsigned long got = 0;
      one.buffer_type = MYSQL_TYPE_STRING;
      one.buffer = big.data();
      one.buffer_length = big.size();
      one.length = &got;
      if (mysql_stmt_fetch_column(s, &one, i, 0)) co_return impl->stmt_error(s);
      big.resize(std::min<std::size_t>(got, big.size()));
      row.emplace_back(std::move(big));
    }
  }
  co_return out;
}

asio::awaitable<Result<void>> Connection::ping(milliseconds timeout) {
  auto impl = impl_;
  MYSQL* m = impl->m;
  if (impl->broken) co_return Error{errc::connection_lost, 0, "connection is broken"};
  impl->begin(timeout);
  int err = 0;
  bool ok = co_await impl->drive([&] { return mysql_ping_start(&err, m); },
                                 [&](int st) { return mysql_ping_cont(&err, m, st); });
  impl->end();
  if (!ok) co_return impl->timeout_error();
  if (err) co_return impl->mysql_error_now();
  co_return Result<void>{};
}

asio::awaitable<void> Connection::close() {
  auto impl = impl_;
  if (!impl->m) co_return;
  if (!impl->broken) {
    for (auto& [sql, entry] : impl->statements) {
      (void)sql;
      impl->close_statement_now(entry.stmt);
    }
    impl->statements.clear();
    impl->lru.clear();
    impl->begin(milliseconds(1000));
    MYSQL* m = impl->m;
    bool ok = co_await impl->drive([&] { return mysql_close_start(m); },
                                   [&](int st) { return mysql_close_cont(m, st); });
    impl->end();
    if (ok || impl->last_status == 0) {
      // mysql_close freed the handle and closed the fd: forget both.
      impl->m = nullptr;
      impl->sd.release();
      co_return;
    }
  }
  // Broken (or the polite close failed): ~Impl shuts the socket down and frees the handle.
  co_return;
}

void library_init() { mysql_library_init(0, nullptr, nullptr); }

void Connection::set_latency(metrics::Histogram* h) { impl_->latency = h; }

}  // namespace pitstop::db
