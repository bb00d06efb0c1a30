// The staleness window and what keeping it closed costs, against running pitstop instances of one
// site (bench/staleness starts them):
//   1. a direct SQL update (around pitstop: triggers, the binary log or the relay's interval)
//      until every instance answers the new value;
//   2. a write through the first instance: its latency, and whether the first read on each other
//      instance right after the answer is still the old value;
//   3. concurrent readers on every instance while writes go through the first one: reads sent
//      after a write was answered that still show an older version.
// Prints one line per figure and a JSON line. Run by bench/staleness.
#include <arpa/inet.h>
#include <mysql.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string label = "pitstop";
  std::vector<int> ports;
  std::string auth;  // "token key:secret"
  std::string db_host = "127.0.0.1", db_user = "pitstop", db_password = "pitstop", db_name = "workshop";
  int db_port = 13306;
  int trials = 50;
  int readers = 4;
  int concurrent_writes = 200;
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
  Connection(const Connection&) = delete;

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

struct Summary {
  double p50 = 0, p99 = 0, max = 0;
};
Summary summarize(std::vector<double> ms) {
  if (ms.empty()) return {};
  std::sort(ms.begin(), ms.end());
  auto at = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<std::size_t>(p * static_cast<double>(ms.size())))]; };
  return {at(0.50), at(0.99), ms.back()};
}
void report(const std::string& label, const char* what, const Summary& s, std::size_t n) {
  std::printf("%-28s %-48s n %4zu   p50 %8.2f ms   p99 %8.2f ms   max %8.2f ms\n", label.c_str(), what, n, s.p50, s.p99, s.max);
}

double since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// customer_name "w<N>": the version a read shows, -1 when it shows none.
long version_of(const std::string& body) {
  auto at = body.find("\"customer_name\":\"w");
  if (at == std::string::npos) return -1;
  return std::strtol(body.c_str() + at + 18, nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--ports") {
      std::stringstream ss(v);
      for (std::string p; std::getline(ss, p, ',');) o.ports.push_back(std::stoi(p));
    } else if (k == "--label") o.label = v;
    else if (k == "--auth") o.auth = v;
    else if (k == "--db-port") o.db_port = std::stoi(v);
    else if (k == "--trials") o.trials = std::stoi(v);
    else if (k == "--readers") o.readers = std::stoi(v);
    else if (k == "--writes") o.concurrent_writes = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (o.ports.size() < 2 || o.auth.empty()) {
    std::fprintf(stderr, "usage: pitstop-staleness --ports A,B[,C…] --auth 'token key:secret' [--label L] [--db-port P] [--trials N] "
                         "[--readers K] [--writes W]\n");
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
  const int docs = std::max(o.trials, 16);
  for (int i = 0; i < docs; ++i)
    sql(m, "INSERT INTO `tabCustomer` (`name`, `customer_name`) VALUES ('BENCH-" + tag + "-" + std::to_string(i) + "', 'w0')");
  auto doc = [&](int i) { return "/api/resource/Customer/BENCH-" + tag + "-" + std::to_string(i); };
  // Let the relay deliver the inserts before anything is cached.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));

  std::vector<std::unique_ptr<Connection>> conns;
  for (int p : o.ports) conns.push_back(std::make_unique<Connection>(p));
  Connection& writer = *conns[0];
  std::vector<double> direct, write_ms;
  int stale_first_reads = 0, first_reads = 0;
  long version = 0;
  for (int i = 0; i < o.trials; ++i) {
    for (auto& c : conns)
      for (int k = 0; k < 2; ++k) c->request("GET", doc(i), o.auth);
    // 1. Around pitstop, until every instance answers it.
    const long direct_v = ++version;
    sql(m, "UPDATE `tabCustomer` SET `customer_name` = 'w" + std::to_string(direct_v) + "' WHERE `name` = 'BENCH-" + tag + "-" +
               std::to_string(i) + "'");
    auto t0 = Clock::now();
    std::vector<bool> fresh(conns.size(), false);
    while (std::count(fresh.begin(), fresh.end(), true) < static_cast<long>(conns.size())) {
      for (std::size_t c = 0; c < conns.size(); ++c) {
        if (fresh[c]) continue;
        auto body = conns[c]->request("GET", doc(i), o.auth);
        if (!body) return 1;
        fresh[c] = version_of(*body) >= direct_v;
      }
      if (since(t0) > 10000) {
        std::fprintf(stderr, "direct update never seen everywhere\n");
        return 1;
      }
    }
    direct.push_back(since(t0));
    // 2. Through the first instance; the first read on every other one right after the answer.
    for (auto& c : conns) c->request("GET", doc(i), o.auth);
    const long written = ++version;
    t0 = Clock::now();
    auto put = writer.request("PUT", doc(i), o.auth, "{\"customer_name\":\"w" + std::to_string(written) + "\"}");
    write_ms.push_back(since(t0));
    if (!put || version_of(*put) != written) {
      std::fprintf(stderr, "write failed: %s\n", put ? put->c_str() : "no answer");
      return 1;
    }
    for (std::size_t c = 1; c < conns.size(); ++c) {
      auto body = conns[c]->request("GET", doc(i), o.auth);
      if (!body) return 1;
      ++first_reads;
      if (version_of(*body) < written) ++stale_first_reads;
    }
  }

  // 3. Concurrent readers on every instance, writes through the first one.
  struct Doc {
    std::atomic<long> answered{0};
  };
  std::vector<Doc> answered(static_cast<std::size_t>(docs));
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0}, stale{0};
  std::atomic<int> last_written{0};  // half the reads go to the document written last: the race is there
  std::vector<std::thread> readers;
  for (int r = 0; r < o.readers; ++r)
    readers.emplace_back([&, r] {
      std::mt19937 rng(static_cast<unsigned>(r) + 7);
      std::vector<std::unique_ptr<Connection>> mine;
      for (int p : o.ports) mine.push_back(std::make_unique<Connection>(p));
      while (!stop) {
        const int d = rng() % 2 ? last_written.load() : static_cast<int>(rng() % 16);
        const long floor = answered[static_cast<std::size_t>(d)].answered.load();
        auto body = mine[rng() % mine.size()]->request("GET", doc(d), o.auth);
        if (!body) return;
        ++reads;
        if (version_of(*body) < floor && version_of(*body) >= 0) ++stale;
      }
    });
  std::vector<double> concurrent_write_ms;
  std::mt19937 rng(1);
  for (int w = 0; w < o.concurrent_writes; ++w) {
    const int d = static_cast<int>(rng() % 16);
    const long v = ++version;
    auto t0 = Clock::now();
    auto put = writer.request("PUT", doc(d), o.auth, "{\"customer_name\":\"w" + std::to_string(v) + "\"}");
    concurrent_write_ms.push_back(since(t0));
    if (!put) return 1;
    answered[static_cast<std::size_t>(d)].answered = v;
    last_written = d;
  }
  stop = true;
  for (auto& t : readers) t.join();

  const auto d = summarize(direct), w = summarize(write_ms), cw = summarize(concurrent_write_ms);
  report(o.label, "direct SQL update -> fresh on every instance", d, direct.size());
  report(o.label, "write latency (idle readers)", w, write_ms.size());
  report(o.label, "write latency (concurrent readers)", cw, concurrent_write_ms.size());
  std::printf("%-28s %-48s %d of %d\n", o.label.c_str(), "first reads elsewhere right after a write: stale", stale_first_reads, first_reads);
  std::printf("%-28s %-48s %ld of %ld\n", o.label.c_str(), "concurrent reads sent after a write's answer: stale", stale.load(), reads.load());
  std::printf("JSON {\"label\":\"%s\",\"instances\":%zu,\"direct_p50\":%.2f,\"direct_p99\":%.2f,\"direct_max\":%.2f,"
              "\"write_p50\":%.2f,\"write_p99\":%.2f,\"cwrite_p50\":%.2f,\"cwrite_p99\":%.2f,\"stale_first\":%d,\"first_reads\":%d,"
              "\"stale\":%ld,\"reads\":%ld}\n",
              o.label.c_str(), conns.size(), d.p50, d.p99, d.max, w.p50, w.p99, cw.p50, cw.p99, stale_first_reads, first_reads,
              stale.load(), reads.load());
  sql(m, "DELETE FROM `tabCustomer` WHERE `name` LIKE 'BENCH-" + tag + "-%'");
  mysql_close(m);
  return 0;
}
