// Request latency on one keep-alive connection: sends the same GET back to back and prints
// p50/p99/max (microseconds) of the answers, with a tally of their statuses. Used by bench/limits.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: pitstop-latency PORT TARGET 'Header: value' REQUESTS [WARMUP]\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const std::string target = argv[2], header = argv[3];
  const int requests = std::atoi(argv[4]);
  const int warmup = argc > 5 ? std::atoi(argv[5]) : 100;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("connect");
    return 1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::string req = "GET " + target + " HTTP/1.1\r\nHost: bench\r\n" + header + "\r\n\r\n";
  std::string buf;
  std::vector<double> us;
  std::map<int, int> statuses;
  for (int i = 0; i < warmup + requests; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (::send(fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) return 1;
    std::size_t end;
    char tmp[65536];
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return 1;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    std::size_t length = 0;
    auto cl = buf.find("Content-Length: ");
    if (cl != std::string::npos && cl < end) length = std::stoul(buf.substr(cl + 16));
    while (buf.size() < end + 4 + length) {
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n <= 0) return 1;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
    const int status = std::atoi(buf.c_str() + 9);
    buf.erase(0, end + 4 + length);
    if (i < warmup) continue;
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    ++statuses[status];
  }
  std::sort(us.begin(), us.end());
  auto at = [&](double p) { return us[std::min(us.size() - 1, static_cast<std::size_t>(p * static_cast<double>(us.size())))]; };
  std::printf("p50 %7.1f us  p99 %7.1f us  max %8.1f us  statuses", at(0.5), at(0.99), us.back());
  for (auto [s, n] : statuses) std::printf(" %d:%d", s, n);
  std::printf("\n");
  return 0;
}
