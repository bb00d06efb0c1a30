#pragma once
// Helpers shared by the tests: the config the services run with, private Redis and MariaDB
// servers that a test may stop and start, child processes, and a raw HTTP client.
#include <sys/types.h>

#include <atomic>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "proxy/config/config.hpp"

namespace pitstop::test {

// The source tree (for config/, README.md, scripts/) and the build tree (for the pitstop binary).
std::filesystem::path source_dir();
std::filesystem::path binary_dir();

// The one folder where this test process keeps its files (logs, configs, server data):
// $TMPDIR/pitstop-tests/<pid>-<random> ($TMPDIR or /tmp), made on first use. It goes, children
// killed first, when the process exits (failed tests included) or takes SIGINT or SIGTERM; the
// folders of test processes that died without removing theirs are removed when the next is made.
const std::filesystem::path& scratch_dir();

// config/pitstop.json with the PITSTOP_* overrides of this environment (scripts/test exports the
// ones that point at the services it started).
config::Config service_config();

std::uint16_t free_port();

// Runs SQL with the mariadb client on `server` (as its configured user); returns the output
// (tab-separated, no column names). Throws when the client fails.
std::string mariadb_sql(const config::MariaDb& server, const std::string& text);

// Percent-encodes everything but letters, digits and -_. (a path segment or a query value).
std::string url_encode(const std::string& s);

// A copy of rules/<file> in scratch_dir() as <name>, its queries folder made absolute and `edit`
// applied to its text; the copy's path (for PITSTOP_RULES).
std::string rules_copy(const std::string& file, const std::string& name, const std::function<void(std::string&)>& edit);

// A user with an API key, created in `server` (tabUser, __Auth with the secret Fernet-encrypted
// by config/pitstop.json's key, tabHas Role) and removed by the destructor.
class ApiUser {
 public:
  ApiUser(config::MariaDb server, std::string name, std::vector<std::string> roles = {"All"});
  ~ApiUser();
  const std::string& name() const { return name_; }
  const std::string& key() const { return key_; }
  const std::string& secret() const { return secret_; }
  std::string token_header() const { return "Authorization: token " + key_ + ":" + secret_; }

 private:
  config::MariaDb server_;
  std::string name_, key_, secret_;
};

// Runs `task` on `ioc` until it completes; fails the test (throws) past `limit`.
void run(boost::asio::io_context& ioc, boost::asio::awaitable<void> task,
         std::chrono::milliseconds limit = std::chrono::seconds(60));

// A child process with its own environment (TMPDIR is scratch_dir()); stdout+stderr go to a log
// file (in scratch_dir() unless given). It is killed when the thread that started it ends, so that
// a test process that dies leaves no server behind: start long-lived ones from the test's thread.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> extra_env = {},
          std::string log_path = {});
  ~Process();
  Process(const Process&) = delete;
  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits for exit; returns the exit status (or 128+signal), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds limit);
  bool running();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// A throw-away redis-server on a free port.
class RedisServer {
 public:
  // `persistent`: every write is fsynced to an append-only file, so that data survives stop().
  explicit RedisServer(bool persistent = false);
  ~RedisServer();
  std::uint16_t port() const { return port_; }
  std::string url() const;
  void start();
  void stop();  // SIGKILL: a crash, not a polite shutdown
  // SIGSTOP / SIGCONT: a server that hangs, its connections open, then carries on.
  void pause();
  void resume();

 private:
  std::uint16_t port_;
  std::filesystem::path dir_;
  bool persistent_;
  std::unique_ptr<Process> proc_;
};

// A throw-away mariadbd with its own data directory (initialised once per test binary).
class MariaDbServer {
 public:
  MariaDbServer();
  ~MariaDbServer();
  std::uint16_t port() const { return port_; }
  config::MariaDb settings() const;  // user pitstop / pitstop, database workshop
  std::string url() const;           // mariadb://pitstop:pitstop@127.0.0.1:<port>/workshop
  // Runs SQL (or a file, with `source <path>`) on `workshop` with the mariadb client; returns
  // its output (tab-separated, no column names); throws when the client fails.
  std::string sql(const std::string& text);
  // sql/schema.sql, sql/outbox.sql and sql/triggers.sql, as scripts/load-data applies them.
  void load_schema();
  void start();
  void stop();  // SIGKILL

 private:
  std::uint16_t port_;
  std::filesystem::path dir_;
  std::unique_ptr<Process> proc_;
};

// A listening socket that accepts and never answers: a server that hangs.
class BlackHole {
 public:
  BlackHole();
  ~BlackHole();
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A TCP relay to 127.0.0.1:<target> that a test can hold: while held, bytes stop flowing in that
// direction and the connections stay open, as with a stalled peer or a congested network.
class Link {
 public:
  explicit Link(std::uint16_t target);
  ~Link();
  Link(const Link&) = delete;
  std::uint16_t port() const { return port_; }
  std::string redis_url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  void hold(bool to_client, bool to_server);
  void release() { hold(false, false); }

 private:
  void run();
  std::uint16_t target_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false}, hold_to_client_{false}, hold_to_server_{false};
  std::thread thread_;
};

// Minimal blocking HTTP client on a raw socket, for tests that need exact bytes.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port, std::string host = "127.0.0.1");
  ~RawClient();
  bool send(std::string_view bytes);  // false when the peer closed
  // Reads one full response (by Content-Length); nullopt on timeout or close before a full one.
  struct Response {
    int status = 0;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
  };
  std::optional<Response> read_response(std::chrono::milliseconds limit = std::chrono::seconds(5));
  // True when the server closed the connection (read returns 0 or reset) within `limit`.
  bool closed_by_peer(std::chrono::milliseconds limit);
  // What arrived after the last response read (a body delimited by the close, once closed).
  const std::string& unread() const { return pending_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  std::string pending_;
};

// A pitstop binary running with config/pitstop.json and these PITSTOP_* overrides (on top of the
// environment's); it listens on a free port of 127.0.0.1 with two workers, on a site of its own,
// with rate limits and the failure budget too high to matter, unless told otherwise.
class Pitstop {
 public:
  // Waits until /readyz answers 200 unless `wait_ready` is false (for tests of broken setups).
  // `config`: the config file (default: the source tree's config/pitstop.json).
  explicit Pitstop(std::map<std::string, std::string> env = {}, bool wait_ready = true, std::string config = {});
  ~Pitstop();
  std::uint16_t port() const { return port_; }
  // The admin listener's port (PITSTOP_ADMIN_LISTEN defaults to 127.0.0.1:0 here); 0 when off.
  std::uint16_t admin_port() const { return admin_port_; }
  Process& process() { return *proc_; }
  // SIGTERM and wait; returns the exit status.
  int stop();

 private:
  std::string port_file_;
  std::uint16_t port_ = 0;
  std::uint16_t admin_port_ = 0;
  std::unique_ptr<Process> proc_;
};

// The Frappe stand-in (tests/erp/standin.py) on a free port, reading the services' MariaDB and
// publishing its events on the queue Redis; `realtime`: a second listener for socket.io.
class StandIn {
 public:
  explicit StandIn(bool realtime = false, std::vector<std::string> extra_args = {});
  std::uint16_t port() const { return port_; }
  std::uint16_t realtime_port() const { return realtime_port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  Process& process() { return *proc_; }
  // Its /__standin/stats, as JSON text; its count of requests for "METHOD /path" (0 if none).
  std::string stats();
  long count(const std::string& method_and_path);
  long requests();
  void control(const std::string& json);

 private:
  std::uint16_t port_ = 0;
  std::uint16_t realtime_port_ = 0;
  std::unique_ptr<Process> proc_;
};

// The Prometheus text exposition format (0.0.4), parsed strictly: every sample's family has a
// TYPE line before it, names and labels are well formed, values are numbers. Throws
// std::runtime_error naming the line otherwise.
struct PromSample {
  std::string name;  // as written (a histogram's _bucket, _sum, _count included)
  std::map<std::string, std::string> labels;
  double value = 0;
};
struct PromText {
  std::map<std::string, std::string> types;  // family -> counter, gauge, histogram, …
  std::vector<PromSample> samples;
  // The sum of the samples named `name` whose labels include `labels`.
  double sum(const std::string& name, const std::map<std::string, std::string>& labels = {}) const;
};
PromText parse_prometheus(const std::string& text);

// One request on a fresh connection, with extra header lines ("Name: value").
std::optional<RawClient::Response> http_request(std::uint16_t port, const std::string& method, const std::string& target,
                                                const std::vector<std::string>& headers = {},
                                                std::chrono::milliseconds limit = std::chrono::seconds(10),
                                                const std::string& body = {});

// The value at `path` in a JSON body: a string as is, anything else as JSON text; "<not json>" or
// "<missing>" when there is none.
std::string json_field(const std::string& body, std::initializer_list<const char*> path);

// The answer's Cache-Status field, or "".
std::string cache_status(const RawClient::Response& r);

// One request on a fresh connection.
std::optional<RawClient::Response> http_get(std::uint16_t port, const std::string& target,
                                            std::chrono::milliseconds limit = std::chrono::seconds(10));

}  // namespace pitstop::test
