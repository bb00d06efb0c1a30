#include "tests/support/support.hpp"

#include "proxy/auth/auth.hpp"

#include <simdjson.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace {
// hiredis and Connector/C write with write(2)/send(2); pitstop ignores SIGPIPE so that a peer
// that went away is an error code. The test processes drive the same clients against servers
// they kill: the same, or the signal kills the test (seen once under ASan, RedisClient tests).
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();
}  // namespace

namespace pitstop::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

fs::path source_dir() { return PITSTOP_SOURCE_DIR; }
fs::path binary_dir() { return PITSTOP_BINARY_DIR; }

config::Config service_config() { return config::load((source_dir() / "config/pitstop.json").string(), environ); }

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

void run(boost::asio::io_context& ioc, boost::asio::awaitable<void> task, std::chrono::milliseconds limit) {
  bool done = false;
  std::exception_ptr error;
  boost::asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e) {
    done = true;
    error = e;
  });
  const auto deadline = std::chrono::steady_clock::now() + limit;
  ioc.restart();
  while (!done && std::chrono::steady_clock::now() < deadline) ioc.run_one_for(50ms);
  if (error) std::rethrow_exception(error);
  if (!done) throw std::runtime_error("test task did not finish within its time limit");
}

// ---------------------------------------------------------------------------------------------

namespace {

// Leaked on purpose: the folder is removed by an atexit handler, which may run after the static
// destructors of this file, and children may still be started or reaped until then.
struct Scratch {
  fs::path dir;
  std::mutex mutex;
  std::set<pid_t> children;  // started and not yet reaped: killed before the folder goes
  bool removed = false;
  // Held while removing: a test that ends while a signal's removal runs waits for it at exit.
  std::mutex removing;
};
Scratch& scratch() {
  static Scratch* s = new Scratch;
  return *s;
}

void remove_scratch() noexcept {
  Scratch& s = scratch();
  std::lock_guard hold(s.removing);
  std::set<pid_t> children;
  {
    std::lock_guard lock(s.mutex);
    if (s.removed || s.dir.empty()) return;
    s.removed = true;
    children = s.children;
  }
  for (pid_t pid : children) ::kill(pid, SIGKILL);
  // WNOWAIT: the Process that owns the child still reaps it, so its pid cannot be reused under it.
  for (pid_t pid : children) {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
    }
  }
  // Until it is gone: on SIGINT or SIGTERM the test goes on meanwhile, and may be removing files
  // there itself (remove_all stops at the first file that vanished under it).
  std::error_code ec;
  for (int pass = 0; pass < 100 && fs::exists(s.dir, ec); ++pass) {
    fs::remove_all(s.dir, ec);
    if (ec) std::this_thread::sleep_for(10ms);
  }
  fs::remove(s.dir.parent_path(), ec);  // only when empty: other test processes' folders stay
}

int signal_pipe[2] = {-1, -1};

extern "C" void on_termination(int sig) {
  const unsigned char c = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = ::write(signal_pipe[1], &c, 1);
}

// SIGINT (Ctrl-C) and SIGTERM still end the process with that signal, but remove the folder
// first. The work happens on a thread of its own: a signal handler may not allocate or take locks.
void remove_scratch_on_termination() {
  if (::pipe2(signal_pipe, O_CLOEXEC) != 0) return;
  std::thread([] {
    unsigned char sig = 0;
    while (::read(signal_pipe[0], &sig, 1) != 1) {
    }
    remove_scratch();
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }).detach();
  for (int sig : {SIGINT, SIGTERM}) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;  // e.g. ignored under nohup
    struct sigaction sa {};
    sa.sa_handler = on_termination;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

// Folders of test processes that are gone without removing theirs (a crash, ctest's SIGKILL on a
// timeout); their children died with them (PR_SET_PDEATHSIG in Process).
void remove_abandoned(const fs::path& parent) {
  std::vector<fs::path> abandoned;
  std::error_code ec;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const long pid = std::atol(it->path().filename().c_str());
    if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) abandoned.push_back(it->path());
  }
  for (const auto& d : abandoned) fs::remove_all(d, ec);
}

fs::path make_scratch() {
  const fs::path parent = fs::temp_directory_path() / "pitstop-tests";
  remove_abandoned(parent);
  std::random_device random;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", random());
  const fs::path dir = parent / (std::to_string(::getpid()) + "-" + suffix);
  for (int attempt = 0;; ++attempt) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (::mkdir(dir.c_str(), 0700) == 0) break;
    // ENOENT: another test process removed the parent, empty at that moment, in between.
    if (errno != ENOENT || attempt == 10) throw std::runtime_error("cannot create " + dir.string() + ": " + std::strerror(errno));
  }
  std::atexit([] { remove_scratch(); });
  remove_scratch_on_termination();
  return dir;
}

void add_child(pid_t pid) {
  Scratch& s = scratch();
  std::lock_guard lock(s.mutex);
  s.children.insert(pid);
}

void forget_child(pid_t pid) {
  Scratch& s = scratch();
  std::lock_guard lock(s.mutex);
  s.children.erase(pid);
}

}  // namespace

const fs::path& scratch_dir() {
  static const bool made = [] {
    fs::path dir = make_scratch();
    Scratch& s = scratch();
    std::lock_guard lock(s.mutex);
    s.dir = std::move(dir);
    return true;
  }();
  (void)made;
  return scratch().dir;
}

// ---------------------------------------------------------------------------------------------

Process::Process(std::vector<std::string> argv, std::map<std::string, std::string> extra_env, std::string log_path)
    : log_path_(std::move(log_path)) {
  if (log_path_.empty()) {
    static std::atomic<int> counter = 0;  // tests start processes from several threads
    log_path_ = (scratch_dir() / ("process-" + std::to_string(counter++) + ".log")).string();
  }
  // Whatever a child puts in its temporary directory goes with the test's folder.
  extra_env.emplace("TMPDIR", scratch_dir().string());
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string entry(*e);
    auto eq = entry.find('=');
    if (extra_env.count(entry.substr(0, eq))) continue;
    env.push_back(entry);
  }
  for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // A test process that crashes or is killed takes its servers with it, so that nothing keeps
    // writing into a folder the next test process removes as abandoned.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    ::setpgid(0, 0);
    std::vector<char*> args, envp;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    ::execvpe(args[0], args.data(), envp.data());
    std::fprintf(stderr, "exec %s failed: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  add_child(pid_);
}

Process::~Process() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    forget_child(pid_);
  }
}

void Process::signal(int sig) {
  if (!status_ && pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds limit) {
  if (status_) return status_;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      forget_child(pid_);
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
}

bool Process::running() { return !wait(0ms).has_value(); }

std::string Process::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

bool port_open(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

void wait_for_port(std::uint16_t port, Process& p, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!port_open(port)) {
    if (!p.running()) throw std::runtime_error(what + " exited: " + p.log());
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error(what + " did not start: " + p.log());
    std::this_thread::sleep_for(20ms);
  }
}

fs::path fresh_dir(const std::string& prefix) {
  static std::atomic<int> counter = 0;
  auto d = scratch_dir() / (prefix + std::to_string(counter++));
  fs::create_directory(d);  // not create_directories: a removed scratch_dir() stays removed
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

RedisServer::RedisServer(bool persistent) : port_(free_port()), dir_(fresh_dir("redis-")), persistent_(persistent) { start(); }

RedisServer::~RedisServer() {
  proc_.reset();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string RedisServer::url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

void RedisServer::start() {
  proc_ = std::make_unique<Process>(std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind",
                                                             "127.0.0.1", "--save", "", "--appendonly", persistent_ ? "yes" : "no",
                                                             "--appendfsync", "always", "--dir", dir_.string()},
                                    std::map<std::string, std::string>{}, (dir_ / "redis.log").string());
  wait_for_port(port_, *proc_, "redis-server");
}

void RedisServer::stop() {
  if (!proc_) return;
  proc_->signal(SIGKILL);
  proc_->wait(10s);
  proc_.reset();
}

void RedisServer::pause() {
  if (proc_) proc_->signal(SIGSTOP);
}

void RedisServer::resume() {
  if (proc_) proc_->signal(SIGCONT);
}

// ---------------------------------------------------------------------------------------------

Link::Link(std::uint16_t target) : target_(target) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0)
    throw std::runtime_error(std::string("link: cannot listen: ") + std::strerror(errno));
  socklen_t len = sizeof a;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  ::fcntl(listen_fd_, F_SETFL, O_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

Link::~Link() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
}

void Link::hold(bool to_client, bool to_server) {
  hold_to_client_ = to_client;
  hold_to_server_ = to_server;
}

void Link::run() {
  struct Side {
    int fd = -1;
    std::string out;  // bytes read from the other side, not yet written to this one
  };
  struct Pair {
    Side client, server;
  };
  std::vector<std::unique_ptr<Pair>> pairs;
  auto connect_target = [&]() -> int {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(target_);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
  };
  auto close_pair = [](Pair& p) {
    ::close(p.client.fd);
    ::close(p.server.fd);
    p.client.fd = p.server.fd = -1;
  };
  while (!stop_) {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    for (auto& p : pairs) {
      // Read from a side only when its bytes may flow and the other side's queue is drained.
      const bool to_server = !hold_to_server_ && p->server.out.empty();
      const bool to_client = !hold_to_client_ && p->client.out.empty();
      short cev = static_cast<short>((to_server ? POLLIN : 0) | (!p->client.out.empty() && !hold_to_client_ ? POLLOUT : 0));
      short sev = static_cast<short>((to_client ? POLLIN : 0) | (!p->server.out.empty() && !hold_to_server_ ? POLLOUT : 0));
      fds.push_back({p->client.fd, cev, 0});
      fds.push_back({p->server.fd, sev, 0});
    }
    if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
    if (fds[0].revents & POLLIN) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c >= 0) {
        int s = connect_target();
        if (s < 0) {
          ::close(c);
        } else {
          int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          ::fcntl(c, F_SETFL, O_NONBLOCK);
          auto p = std::make_unique<Pair>();
          p->client.fd = c;
          p->server.fd = s;
          pairs.push_back(std::move(p));
        }
      }
    }
    for (std::size_t i = 0; i < pairs.size() && 1 + 2 * i + 1 < fds.size(); ++i) {
      Pair& p = *pairs[i];
      const pollfd& cf = fds[1 + 2 * i];
      const pollfd& sf = fds[2 + 2 * i];
      bool closed = false;
      auto pump = [&](const pollfd& from_fd, Side& from, Side& to) {
        (void)from;
        if (from_fd.revents & (POLLIN | POLLHUP | POLLERR)) {
          char buf[65536];
          ssize_t n = ::read(from_fd.fd, buf, sizeof buf);
          if (n <= 0) closed = true;
          else to.out.append(buf, static_cast<std::size_t>(n));
        }
      };
      auto flush = [&](const pollfd& fd, Side& side) {
        if ((fd.revents & POLLOUT) && !side.out.empty()) {
          ssize_t n = ::send(side.fd, side.out.data(), side.out.size(), MSG_NOSIGNAL);
          if (n < 0 && errno != EAGAIN) closed = true;
          if (n > 0) side.out.erase(0, static_cast<std::size_t>(n));
        }
      };
      pump(cf, p.client, p.server);
      pump(sf, p.server, p.client);
      flush(cf, p.client);
      flush(sf, p.server);
      if (closed) close_pair(p);
    }
    std::erase_if(pairs, [](const auto& p) { return p->client.fd < 0; });
  }
  for (auto& p : pairs) close_pair(*p);
}

// ---------------------------------------------------------------------------------------------

namespace {

// One initialised data directory per test binary, copied for each server.
const fs::path& mariadb_template() {
  static const fs::path dir = [] {
    auto d = fresh_dir("mariadb-template-");
    // A private tmpdir: concurrent bootstraps in one /tmp collide on temporary table names.
    fs::create_directories(d / "tmp");
    std::vector<std::string> argv{"mariadb-install-db", "--no-defaults", "--datadir=" + (d / "data").string(),
                                  "--skip-test-db", "--auth-root-authentication-method=normal", "--tmpdir=" + (d / "tmp").string()};
    if (::getuid() == 0) argv.push_back("--user=root");
    Process p(argv, {}, (d / "install.log").string());
    auto st = p.wait(120s);
    if (!st || *st != 0) throw std::runtime_error("mariadb-install-db failed: " + p.log());
    // A directory in the data directory is a database.
    fs::create_directories(d / "data" / "workshop");
    return d / "data";
  }();
  return dir;
}

}  // namespace

MariaDbServer::MariaDbServer() : port_(free_port()), dir_(fresh_dir("mariadb-")) {
  fs::copy(mariadb_template(), dir_ / "data", fs::copy_options::recursive);
  fs::create_directories(dir_ / "tmp");
  start();
}

MariaDbServer::~MariaDbServer() {
  proc_.reset();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

config::MariaDb MariaDbServer::settings() const {
  config::MariaDb m;
  m.host = "127.0.0.1";
  m.port = port_;
  m.user = "pitstop";
  m.password = "pitstop";
  m.database = "workshop";
  return m;
}

std::string url_encode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string rules_copy(const std::string& file, const std::string& name, const std::function<void(std::string&)>& edit) {
  std::ifstream in(source_dir() / "rules" / file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const std::string rel = "\"../sql/queries\"";
  const auto at = text.find(rel);
  if (at == std::string::npos) throw std::runtime_error("rules/" + file + " names no ../sql/queries");
  std::string queries = "\"";
  queries.append((source_dir() / "sql/queries").string()).append("\"");
  text.replace(at, rel.size(), queries);
  edit(text);
  const auto path = scratch_dir() / name;
  std::ofstream(path) << text;
  return path.string();
}

std::string mariadb_sql(const config::MariaDb& server, const std::string& text) {
  static std::atomic<int> n = 0;  // tests call this from several threads
  auto file = scratch_dir() / ("sql-" + std::to_string(n++) + ".sql");
  std::ofstream(file) << text;
  Process p({"mariadb", "--no-defaults", "-h", server.host, "-P", std::to_string(server.port), "-u", server.user,
             "--password=" + server.password, "-N", "-B", server.database, "-e", "source " + file.string()});
  auto st = p.wait(120s);
  std::error_code ec;
  fs::remove(file, ec);
  // The client exits 0 when a statement of a sourced file fails: its "ERROR <n> (<state>) at line"
  // is the sign, and a test must not go on over a setup that did not happen.
  const std::string log = p.log();
  static const std::regex failed("(^|\n)ERROR [0-9]+ \\([0-9A-Z]+\\) at line");
  if (!st || *st != 0 || std::regex_search(log, failed)) throw std::runtime_error("mariadb client failed: " + log);
  return log;
}

ApiUser::ApiUser(config::MariaDb server, std::string name, std::vector<std::string> roles)
    : server_(std::move(server)), name_(std::move(name)) {
  static int n = 0;
  const std::string tag = std::to_string(::getpid()) + "x" + std::to_string(n++);
  key_ = "key" + tag;
  secret_ = "secret" + tag;
  auto cfg = service_config();
  auto fernet = auth::Fernet::from_key(cfg.auth.encryption_key);
  std::string sql = "DELETE FROM `tabUser` WHERE name = '" + name_ + "';\n"
                    "INSERT INTO `tabUser` (name, enabled, api_key) VALUES ('" + name_ + "', 1, '" + key_ + "');\n"
                    "REPLACE INTO `__Auth` (doctype, name, fieldname, password, encrypted) VALUES ('User', '" + name_ +
                    "', 'api_secret', '" + fernet->encrypt(secret_) + "', 1);\n";
  int idx = 0;
  for (const auto& r : roles)
    sql += "INSERT INTO `tabHas Role` (name, role, parent, parenttype, parentfield, idx) VALUES ('" + name_ + "-" + r + "', '" + r +
           "', '" + name_ + "', 'User', 'roles', " + std::to_string(++idx) + ");\n";
  mariadb_sql(server_, sql);
}

ApiUser::~ApiUser() {
  try {
    mariadb_sql(server_, "DELETE FROM `tabUser` WHERE name = '" + name_ + "'; DELETE FROM `__Auth` WHERE name = '" + name_ +
                             "'; DELETE FROM `tabHas Role` WHERE parent = '" + name_ + "';");
  } catch (...) {
    // The server may be gone (a test stopped it); nothing to clean then.
  }
}

std::string MariaDbServer::url() const { return "mariadb://pitstop:pitstop@127.0.0.1:" + std::to_string(port_) + "/workshop"; }

std::string MariaDbServer::sql(const std::string& text) { return mariadb_sql(settings(), text); }

void MariaDbServer::load_schema() {
  for (const char* f : {"sql/schema.sql", "sql/outbox.sql", "sql/triggers.sql"}) sql("source " + (source_dir() / f).string() + ";");
}

void MariaDbServer::start() {
  std::vector<std::string> argv{"mariadbd",
                                "--no-defaults",
                                "--datadir=" + (dir_ / "data").string(),
                                "--socket=" + (dir_ / "mariadb.sock").string(),
                                "--pid-file=" + (dir_ / "mariadb.pid").string(),
                                "--port=" + std::to_string(port_),
                                "--bind-address=127.0.0.1",
                                "--tmpdir=" + (dir_ / "tmp").string(),
                                // A disposable server: no accounts to set up, small and fast.
                                "--skip-grant-tables",
                                "--skip-log-bin",
                                "--innodb-buffer-pool-size=16M",
                                "--innodb-flush-log-at-trx-commit=0"};
  if (::getuid() == 0) argv.push_back("--user=root");
  proc_ = std::make_unique<Process>(argv, std::map<std::string, std::string>{}, (dir_ / "mariadb.log").string());
  wait_for_port(port_, *proc_, "mariadbd");
}

void MariaDbServer::stop() {
  if (!proc_) return;
  proc_->signal(SIGKILL);
  proc_->wait(10s);
  proc_.reset();
}

// ---------------------------------------------------------------------------------------------

BlackHole::BlackHole() {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::listen(fd_, 64);  // the kernel completes handshakes; nobody ever reads or writes
  socklen_t len = sizeof a;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
}

BlackHole::~BlackHole() { ::close(fd_); }

// ---------------------------------------------------------------------------------------------

RawClient::RawClient(std::uint16_t port, std::string host) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  a.sin_port = htons(port);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("connect to port " + std::to_string(port) + " failed: " + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawClient::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

namespace {
// Reads more bytes into `buf`; false on close, error or timeout.
bool read_more(int fd, std::string& buf, std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
  char tmp[16384];
  ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
  if (n <= 0) return false;
  buf.append(tmp, static_cast<std::size_t>(n));
  return true;
}
}  // namespace

std::optional<RawClient::Response> RawClient::read_response(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::size_t end;
  while ((end = pending_.find("\r\n\r\n")) == std::string::npos)
    if (!read_more(fd_, pending_, deadline)) return std::nullopt;
  Response r;
  std::istringstream head(pending_.substr(0, end));
  std::string line;
  std::getline(head, line);
  if (line.size() < 12) return std::nullopt;
  r.status = std::stoi(line.substr(9, 3));
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers[name] = value;
  }
  std::size_t length = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
  pending_.erase(0, end + 4);
  // 1xx, 204 and 304 carry no body; HEAD answers are read by the test with length 0 expected.
  if (r.status < 200 || r.status == 204 || r.status == 304) length = 0;
  while (pending_.size() < length)
    if (!read_more(fd_, pending_, deadline)) return std::nullopt;
  r.body = pending_.substr(0, length);
  pending_.erase(0, length);
  return r;
}

bool RawClient::closed_by_peer(std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return true;
    pending_.append(tmp, static_cast<std::size_t>(n));
  }
}

StandIn::StandIn(bool realtime, std::vector<std::string> extra_args) {
  const config::Config cfg = service_config();
  std::vector<std::string> argv{"/usr/bin/python3", (source_dir() / "tests/erp/standin.py").string(), "--port", "0",
                                "--realtime-port", realtime ? "0" : "-1", "--mariadb", cfg.mariadb.primary_url,
                                "--events-redis", cfg.redis_queue.url, "--site", cfg.site,
                                "--config", (source_dir() / "config/pitstop.json").string(),
                                "--queries-dir", (source_dir() / "sql/queries").string(),
                                "--rules", (source_dir() / "rules/workshop.json").string()};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  proc_ = std::make_unique<Process>(argv);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (true) {
    const std::string log = proc_->log();
    if (auto at = log.find("LISTENING "); at != std::string::npos && log.find('\n', at) != std::string::npos) {
      int rt = -1;
      unsigned p = 0;
      if (std::sscanf(log.c_str() + at, "LISTENING %u %d", &p, &rt) >= 1) {
        port_ = static_cast<std::uint16_t>(p);
        realtime_port_ = rt > 0 ? static_cast<std::uint16_t>(rt) : 0;
        break;
      }
    }
    if (!proc_->running()) throw std::runtime_error("the stand-in exited: " + log);
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("the stand-in did not start: " + log);
    std::this_thread::sleep_for(20ms);
  }
}

std::string StandIn::stats() {
  auto r = http_get(port_, "/__standin/stats");
  if (!r || r->status != 200) throw std::runtime_error("the stand-in's stats did not answer");
  return r->body;
}

long StandIn::count(const std::string& method_and_path) {
  const std::string v = json_field(stats(), {"by_path", method_and_path.c_str()});
  return v.starts_with("<") ? 0 : std::stol(v);
}

long StandIn::requests() { return std::stol(json_field(stats(), {"requests"})); }

void StandIn::control(const std::string& json) {
  auto r = http_request(port_, "POST", "/__standin/control", {"Content-Type: application/json"}, 10s, json);
  if (!r || r->status != 200) throw std::runtime_error("the stand-in's control did not answer");
}

Pitstop::Pitstop(std::map<std::string, std::string> env, bool wait_ready, std::string config) {
  if (config.empty()) config = (source_dir() / "config/pitstop.json").string();
  static int n = 0;
  port_file_ = (scratch_dir() / ("pitstop-port-" + std::to_string(n++))).string();
  fs::remove(port_file_);
  fs::remove(port_file_ + ".admin");
  env.emplace("PITSTOP_LISTEN", "127.0.0.1:0");
  env.emplace("PITSTOP_ADMIN_LISTEN", "127.0.0.1:0");
  env.emplace("PITSTOP_WORKERS", "2");
  // A site of its own unless the test shares one: a new site's relay starts at the end of the
  // outbox, while the config's site would first relay every row other tests' sites wrote since
  // it last ran (on a machine that ran the suite all day, 80,000 rows: past the ready deadline
  // under ASan).
  env.emplace("PITSTOP_SITE", "test-" + std::to_string(::getpid()) + "-" + std::to_string(n));
  // Tests send bursts as one user: quotas out of the way unless a test sets its own.
  for (const char* cls : {"GET", "POST", "PUT", "DELETE"}) {
    env.emplace(std::string("PITSTOP_RATE_LIMITS_") + cls + "_LIMIT", "1000000");
    env.emplace(std::string("PITSTOP_RATE_LIMITS_") + cls + "_BURST", "100000");
  }
  env.emplace("PITSTOP_AUTH_FAILURE_LIMIT", "1000000");
  proc_ = std::make_unique<Process>(std::vector<std::string>{(binary_dir() / "pitstop").string(), "--config",
                                                             config, "--port-file", port_file_},
                                    env);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (true) {
    std::ifstream in(port_file_);
    if (in >> port_) {
      std::ifstream admin(port_file_ + ".admin");
      if (!(admin >> admin_port_)) admin_port_ = 0;
      break;
    }
    if (!proc_->running()) throw std::runtime_error("pitstop exited: " + proc_->log());
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("pitstop did not start: " + proc_->log());
    std::this_thread::sleep_for(20ms);
  }
  while (wait_ready) {
    auto r = http_get(port_, "/readyz", 2s);
    if (r && r->status == 200) break;
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("pitstop did not get ready: " + (r ? r->body : std::string("no answer")) + "\n" + proc_->log());
    std::this_thread::sleep_for(20ms);
  }
}

Pitstop::~Pitstop() {
  std::error_code ec;
  fs::remove(port_file_, ec);
  fs::remove(port_file_ + ".admin", ec);
}

int Pitstop::stop() {
  proc_->signal(SIGTERM);
  auto st = proc_->wait(20s);
  return st ? *st : -1;
}

std::optional<RawClient::Response> http_request(std::uint16_t port, const std::string& method, const std::string& target,
                                                const std::vector<std::string>& headers, std::chrono::milliseconds limit,
                                                const std::string& body) {
  RawClient c(port);
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (!c.send(req)) return std::nullopt;
  return c.read_response(limit);
}

std::optional<RawClient::Response> http_get(std::uint16_t port, const std::string& target,
                                            std::chrono::milliseconds limit) {
  RawClient c(port);
  if (!c.send("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n")) return std::nullopt;
  return c.read_response(limit);
}

std::string json_field(const std::string& body, std::initializer_list<const char*> path) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  if (p.parse(body).get(e)) return "<not json>";
  for (const char* k : path)
    if (e[k].get(e)) return "<missing>";
  if (e.is_string()) return std::string(e.get_string().value_unsafe());
  return simdjson::to_string(e);
}

std::string cache_status(const RawClient::Response& r) {
  auto it = r.headers.find("cache-status");
  return it == r.headers.end() ? "" : it->second;
}

double PromText::sum(const std::string& name, const std::map<std::string, std::string>& labels) const {
  double total = 0;
  for (const auto& s : samples) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      all = all && it != s.labels.end() && it->second == v;
    }
    if (all) total += s.value;
  }
  return total;
}

PromText parse_prometheus(const std::string& text) {
  PromText out;
  auto name_ok = [](std::string_view n) {
    if (n.empty() || (n[0] >= '0' && n[0] <= '9')) return false;
    for (char c : n)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':')) return false;
    return true;
  };
  auto fail = [](std::size_t line, const std::string& why) {
    throw std::runtime_error("metrics line " + std::to_string(line) + ": " + why);
  };
  std::istringstream in(text);
  std::string line;
  std::size_t no = 0;
  while (std::getline(in, line)) {
    ++no;
    if (line.empty()) continue;
    if (line.starts_with("# TYPE ")) {
      std::istringstream f(line.substr(7));
      std::string family, type;
      f >> family >> type;
      if (!name_ok(family) || (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" && type != "untyped"))
        fail(no, "bad TYPE line: " + line);
      if (out.types.count(family)) fail(no, "second TYPE for " + family);
      out.types[family] = type;
      continue;
    }
    if (line.starts_with("#")) continue;
    PromSample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!name_ok(s.name)) fail(no, "bad metric name: " + line);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') fail(no, "bad label: " + line);
        std::string key = line.substr(i, eq - i);
        if (!name_ok(key)) fail(no, "bad label name: " + line);
        std::string value;
        std::size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        if (j >= line.size()) fail(no, "unterminated label value: " + line);
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) fail(no, "unterminated labels: " + line);
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') fail(no, "no value: " + line);
    const std::string v = line.substr(i + 1);
    char* end = nullptr;
    s.value = std::strtod(v.c_str(), &end);
    if (v == "+Inf") s.value = HUGE_VAL;
    else if (end == v.c_str() || (*end && *end != ' ')) fail(no, "bad value: " + line);
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!out.types.count(family) && family.ends_with(suffix)) family = family.substr(0, family.size() - std::strlen(suffix));
    if (!out.types.count(family)) fail(no, "sample before its TYPE line: " + line);
    out.samples.push_back(std::move(s));
  }
  return out;
}

}  // namespace pitstop::test
