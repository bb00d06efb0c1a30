// N simultaneous requests for one URL, each on its own connection, sent together once every
// connection is open: bench/compare's cold-key row. Prints one line:
//   n=64 ok=64 origin=1 min_ms=… p50_ms=… max_ms=… statuses=200:64
// where `origin` counts the answers whose CLASS_HEADER contains ORIGIN_MARK (pitstop: the one
// Cache-Status saying "stored"; nginx: X-Cache-Status "MISS"): the requests that reached the origin.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Conn {
  int fd = -1;
  std::string in;
  bool done = false;
  int status = 0;
  std::string class_value;
  double ms = 0;
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Complete when the headers and Content-Length bytes of body are in.
bool complete(Conn& c, const std::string& class_header) {
  auto end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  const std::string head = c.in.substr(0, end);
  std::size_t length = 0;
  std::size_t pos = head.find("\r\n");
  if (head.size() > 12) c.status = std::atoi(head.c_str() + 9);
  while (pos != std::string::npos) {
    std::size_t next = head.find("\r\n", pos + 2);
    std::string line = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = lower(line.substr(0, colon));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      if (name == "content-length") length = std::strtoul(value.c_str(), nullptr, 10);
      if (name == class_header) c.class_value = value;
    }
    pos = next;
  }
  return c.in.size() >= end + 4 + length;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: pitstop-burst PORT TARGET 'Header: value' N CLASS_HEADER ORIGIN_MARK [TIMEOUT_MS]\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const std::string target = argv[2], header = argv[3];
  const int n = std::atoi(argv[4]);
  const std::string class_header = lower(argv[5]), origin_mark = argv[6];
  const int timeout_ms = argc > 7 ? std::atoi(argv[7]) : 10000;
  if (port <= 0 || port > 65535 || n <= 0 || n > 1000 || timeout_ms <= 0) {
    std::fprintf(stderr, "pitstop-burst: PORT 1..65535, N 1..1000, TIMEOUT_MS > 0\n");
    return 2;
  }
  std::vector<Conn> conns(static_cast<std::size_t>(n));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  for (auto& c : conns) {
    c.fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::perror("pitstop-burst: connect");
      return 1;
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: bench\r\n" + header + "\r\n\r\n";
  const auto start = Clock::now();
  for (auto& c : conns)
    if (::send(c.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
      std::perror("pitstop-burst: send");
      return 1;
    }
  std::vector<pollfd> pfds(conns.size());
  int left = n;
  char buf[65536];
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  while (left > 0 && Clock::now() < deadline) {
    for (std::size_t i = 0; i < conns.size(); ++i) pfds[i] = {conns[i].done ? -1 : conns[i].fd, POLLIN, 0};
    ::poll(pfds.data(), pfds.size(), 50);
    for (std::size_t i = 0; i < conns.size(); ++i) {
      if (conns[i].done || !(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = ::recv(conns[i].fd, buf, sizeof buf, 0);
      if (got <= 0) {
        conns[i].done = true;
        conns[i].ms = -1;
        --left;
        continue;
      }
      conns[i].in.append(buf, static_cast<std::size_t>(got));
      if (complete(conns[i], class_header)) {
        conns[i].done = true;
        conns[i].ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        --left;
      }
    }
  }
  std::vector<double> ms;
  std::map<int, int> statuses;
  int origin = 0, ok = 0;
  for (auto& c : conns) {
    ::close(c.fd);
    if (!c.done || c.ms < 0) {
      ++statuses[0];
      continue;
    }
    ++statuses[c.status];
    if (c.status == 200) ++ok;
    if (c.class_value.find(origin_mark) != std::string::npos) ++origin;
    ms.push_back(c.ms);
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms.empty() ? 0.0 : ms[std::min(ms.size() - 1, static_cast<std::size_t>(q * static_cast<double>(ms.size())))]; };
  std::printf("n=%d ok=%d origin=%d min_ms=%.1f p50_ms=%.1f max_ms=%.1f statuses=", n, ok, origin, at(0), at(0.5),
              ms.empty() ? 0.0 : ms.back());
  bool first = true;
  for (auto [s, k] : statuses) {
    std::printf("%s%d:%d", first ? "" : ",", s, k);
    first = false;
  }
  std::printf("\n");
  return ok == n ? 0 : 1;
}
