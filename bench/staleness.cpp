// The staleness window, measured against running pitstop instances: how long after a change an
// answer through pitstop is fresh.
//   1. a direct SQL update (around pitstop: the triggers and the outbox relay catch it) until
//      instance A answers the new value;
//   2. a write through instance A until instance B answers the new value.
// Prints p50/p99/max over the trials. Run by bench/staleness, which starts what it needs.
#include <arpa/inet.h>
#include <mysql.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int port_a = 0, port_b = 0;
  std::string auth;  // "token key:secret"
  std::string db_host = "127.0.0.1", db_user = "pitstop", db_password = "pitstop", db_name = "workshop";
  int db_port = 13306;
  int trials = 50;
};

// One keep-alive connection, blocking, just enough HTTP/1.1 for this.
class Connection {
 public:
  explicit Connection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::perror("connect");
      std::exit(1);
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Connection() { ::close(fd_); }

  // Returns the body, or nullopt on a broken connection.
  std::optional<std::string> request(const std::string& method, const std::string& target, const std::string& auth,
                                     const std::string& body = {}) {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: bench\r\nAuthorization: " + auth + "\r\n";
    if (!body.empty()) req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return std::nullopt;
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!more()) return std::nullopt;
    std::size_t length = 0;
    auto cl = buf_.find("Content-Length: ");
    if (cl != std::string::npos && cl < end) length = std::stoul(buf_.substr(cl + 16));
    while (buf_.size() < end + 4 + length)
      if (!more()) return std::nullopt;
    std::string out = buf_.substr(end + 4, length);
    buf_.erase(0, end + 4 + length);
    return out;
  }

 private:
  bool more() {
    char tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  int fd_;
  std::string buf_;
};

void sql(MYSQL* m, const std::string& q) {
  if (mysql_query(m, q.c_str()) != 0) {
    std::fprintf(stderr, "sql: %s\n", mysql_error(m));
    std::exit(1);
  }
}

void report(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(p * static_cast<double>(ms.size())))]; };
  std::printf("%-52s trials %3zu   p50 %8.2f ms   p99 %8.2f ms   max %8.2f ms\n", what, ms.size(), at(0.50), at(0.99), ms.back());
}

double since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--a") o.port_a = std::stoi(v);
    else if (k == "--b") o.port_b = std::stoi(v);
    else if (k == "--auth") o.auth = v;
    else if (k == "--db-port") o.db_port = std::stoi(v);
    else if (k == "--trials") o.trials = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (!o.port_a || !o.port_b || o.auth.empty()) {
    std::fprintf(stderr, "usage: pitstop-staleness --a PORT --b PORT --auth 'token key:secret' [--db-port P] [--trials N]\n");
    return 2;
  }
  MYSQL* m = mysql_init(nullptr);
  if (!mysql_real_connect(m, o.db_host.c_str(), o.db_user.c_str(), o.db_password.c_str(), o.db_name.c_str(),
                          static_cast<unsigned>(o.db_port), nullptr, 0)) {
    std::fprintf(stderr, "mariadb: %s\n", mysql_error(m));
    return 1;
  }
  // Customers of its own, made and removed here, so that the sample data stays as it was.
  const std::string tag = std::to_string(::getpid());
  for (int i = 0; i < o.trials; ++i)
    sql(m, "INSERT INTO `tabCustomer` (`name`, `customer_name`) VALUES ('BENCH-" + tag + "-" + std::to_string(i) + "', 'bench')");
  Connection a(o.port_a), b(o.port_b);
  std::vector<double> direct, through;
  int stale_first_reads = 0;
  for (int i = 0; i < o.trials; ++i) {
    const std::string customer = "BENCH-" + tag + "-" + std::to_string(i);
    const std::string doc = std::string("/api/resource/Customer/") + customer;
    // 1. Around pitstop.
    a.request("GET", doc, o.auth);
    a.request("GET", doc, o.auth);
    const std::string direct_name = "direct-" + std::to_string(i) + "-" + std::to_string(Clock::now().time_since_epoch().count());
    sql(m, "UPDATE `tabCustomer` SET `customer_name` = '" + direct_name + "' WHERE `name` = '" + customer + "'");
    auto t0 = Clock::now();
    while (true) {
      auto body = a.request("GET", doc, o.auth);
      if (!body) return 1;
      if (body->find(direct_name) != std::string::npos) break;
      if (since(t0) > 10000) {
        std::fprintf(stderr, "direct update of %s never seen\n", customer.c_str());
        return 1;
      }
    }
    direct.push_back(since(t0));
    // 2. Through A, read on B.
    b.request("GET", doc, o.auth);
    b.request("GET", doc, o.auth);
    const std::string written = "written-" + std::to_string(i) + "-" + std::to_string(Clock::now().time_since_epoch().count());
    auto put = a.request("PUT", doc, o.auth, "{\"customer_name\":\"" + written + "\"}");
    if (!put || put->find(written) == std::string::npos) {
      std::fprintf(stderr, "write failed: %s\n", put ? put->c_str() : "no answer");
      return 1;
    }
    t0 = Clock::now();
    for (bool first = true;; first = false) {
      auto body = b.request("GET", doc, o.auth);
      if (!body) return 1;
      if (body->find(written) != std::string::npos) break;
      if (first) ++stale_first_reads;
      if (since(t0) > 10000) {
        std::fprintf(stderr, "write through A never seen on B\n");
        return 1;
      }
    }
    through.push_back(since(t0));
  }
  report("direct SQL update -> first fresh read (instance A)", direct);
  report("write through A -> first fresh read (instance B)", through);
  std::printf("reads on B right after A answered the write that were still stale: %d of %zu\n", stale_first_reads, through.size());
  sql(m, "DELETE FROM `tabCustomer` WHERE `name` LIKE 'BENCH-" + tag + "-%'");
  mysql_close(m);
  return 0;
}
