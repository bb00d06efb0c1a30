#include "proxy/log/access.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "proxy/json/writer.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::log {

namespace {

constexpr auto kFlushEvery = std::chrono::milliseconds(200);

bool contains(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    bool same = true;
    for (std::size_t j = 0; j < needle.size() && same; ++j) {
      char c = haystack[i + j];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      same = c == needle[j];
    }
    if (same) return true;
  }
  return false;
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk loses lines, never the process
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

bool secret_name(std::string_view name) {
  // Frappe's and common clients' names for credentials; "key" catches api_key, secret_key,
  // encryption_key; "sid" the session cookie as a parameter.
  for (std::string_view s : {"password", "passwd", "pwd", "secret", "token", "key", "sid", "auth", "signature", "otp", "cookie"})
    if (contains(name, s)) return true;
  return false;
}

std::string redact_target(std::string_view target) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  std::string_view rest = target.substr(q + 1);
  bool first = true;
  while (true) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (!first) out += '&';
    first = false;
    const auto eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    if (eq != std::string_view::npos && secret_name(name)) {
      out.append(name);
      out += "=REDACTED";
    } else {
      out.append(pair);
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return out;
}

void format_access(std::string& out, const AccessRecord& r) {
  json::Writer w(out);
  w.begin_object();
  w.member("time", utc_text(r.time, 'T', 3, true));
  w.member("request_id", r.request_id);
  w.member("client", r.client);
  w.member("user", r.user);
  w.member("method", r.method);
  w.member("path", redact_target(r.target));
  w.member("rule", r.rule);
  w.member("status", static_cast<std::uint64_t>(r.status));
  w.member("bytes", r.bytes);
  w.member("cache", r.cache);
  w.member("total_ms", static_cast<double>(static_cast<std::int64_t>(r.total_ms * 1000)) / 1000);
  w.member("origin_ms", static_cast<double>(static_cast<std::int64_t>(r.origin_ms * 1000)) / 1000);
  if (r.remaining >= 0) w.member("ratelimit_remaining", r.remaining);
  else w.key("ratelimit_remaining").null();
  w.end_object();
  out += '\n';
}

AccessLog::AccessLog(std::string destination, int workers, std::size_t buffer_bytes) : buffer_bytes_(buffer_bytes) {
  for (int i = 0; i < workers; ++i) buffers_.push_back(std::make_unique<Buffer>());
  std::string why;
  if (!retarget(destination, why)) throw std::runtime_error(why);
  thread_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(wake_m_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  write_out();
  if (own_fd_ && fd_ >= 0) ::close(fd_);
}

int AccessLog::open(const std::string& destination, std::string& why) const {
  if (destination == "-") return STDOUT_FILENO;
  const int fd = ::open(destination.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) why = "cannot open the access log " + destination + ": " + std::strerror(errno) + " (set log.access or PITSTOP_LOG_ACCESS)";
  return fd;
}

bool AccessLog::retarget(const std::string& destination, std::string& why) {
  int fd = -1;
  if (!destination.empty() && (fd = open(destination, why)) < 0) return false;
  write_out();  // what was logged so far goes where it was meant to
  std::lock_guard lock(fd_m_);
  if (own_fd_ && fd_ >= 0) ::close(fd_);
  fd_ = fd;
  own_fd_ = fd >= 0 && fd != STDOUT_FILENO;
  destination_ = destination;
  enabled_.store(fd >= 0, std::memory_order_relaxed);
  return true;
}

void AccessLog::write(int worker, const AccessRecord& r) {
  if (!enabled() || worker < 0 || static_cast<std::size_t>(worker) >= buffers_.size()) return;
  Buffer& b = *buffers_[static_cast<std::size_t>(worker)];
  b.line.clear();
  format_access(b.line, r);
  bool wake = false;
  {
    std::lock_guard lock(b.m);
    if (b.pending.size() + b.line.size() > buffer_bytes_) {
      ++b.dropped;
      return;
    }
    b.pending += b.line;
    wake = b.pending.size() > buffer_bytes_ / 2;
  }
  if (wake) wake_.notify_one();
}

void AccessLog::reopen() {
  reopen_.store(true, std::memory_order_relaxed);
  wake_.notify_one();
}

void AccessLog::flush() { write_out(); }

std::uint64_t AccessLog::dropped() const {
  std::uint64_t n = 0;
  for (const auto& b : buffers_) {
    std::lock_guard lock(b->m);
    n += b->dropped;
  }
  return n;
}

void AccessLog::write_out() {
  std::lock_guard fd_lock(fd_m_);
  if (reopen_.exchange(false) && own_fd_) {
    std::string why;
    const int fd = open(destination_, why);
    if (fd >= 0) {
      ::close(fd_);
      fd_ = fd;
    } else {
      log::warn(why);
    }
  }
  std::string out;
  for (auto& b : buffers_) {
    {
      std::lock_guard lock(b->m);
      out.swap(b->pending);
    }
    if (out.empty()) continue;
    if (fd_ >= 0) write_all(fd_, out);
    std::uint64_t lines = 0;
    for (char c : out) lines += c == '\n';
    written_.fetch_add(lines, std::memory_order_relaxed);
    out.clear();
  }
}

void AccessLog::run() {
  std::unique_lock lock(wake_m_);
  while (!stop_) {
    wake_.wait_for(lock, kFlushEvery);
    if (stop_) break;
    lock.unlock();
    write_out();
    lock.lock();
  }
}

}  // namespace pitstop::log
