#pragma once
// The access log: one JSON line per request. Workers format their line on their own thread and
// append it to their own bounded buffer; a separate thread writes the buffers out. A full buffer
// drops the line (counted), it never makes a request wait. Credentials never appear: the user is
// a name, and query values of parameters named like secrets are replaced.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace pitstop::log {

struct AccessRecord {
  std::chrono::system_clock::time_point time;
  std::string_view request_id;
  std::string_view client;
  std::string_view user;    // "" for a guest
  std::string_view method;
  std::string_view target;  // path and query as sent (redacted when written)
  std::string_view rule;    // "" when none matched; "-relay" for what went to the ERP
  unsigned status = 0;
  std::uint64_t bytes = 0;
  std::string_view cache;   // cache::name of how it was served, "" when not a read
  double total_ms = 0;
  double origin_ms = 0;
  std::int64_t remaining = -1;  // rate-limit requests left; -1 when not limited
};

// Whether a query parameter's name says its value is a secret (password, token, key, sid, …).
bool secret_name(std::string_view name);
// `target` with the values of secret-named parameters replaced by "REDACTED".
std::string redact_target(std::string_view target);
// Appends the record as one JSON line (with its newline).
void format_access(std::string& out, const AccessRecord& r);

class AccessLog {
 public:
  // `destination`: "" (off), "-" (stdout) or a file, opened for appending. Throws
  // std::runtime_error when the file cannot be opened (at start-up only).
  AccessLog(std::string destination, int workers, std::size_t buffer_bytes = 1u << 20);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  // On worker `worker`'s thread.
  void write(int worker, const AccessRecord& r);
  // Reopens the file (after logrotate moved it): asked from a signal handler's loop, done by the
  // writer thread.
  void reopen();
  // A new destination (a reload); false with `why` when it cannot be opened (the old one stays).
  bool retarget(const std::string& destination, std::string& why);
  const std::string& destination() const { return destination_; }
  // Writes out what is buffered now (tests, shutdown).
  void flush();

  std::uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const;

 private:
  struct Buffer {
    std::mutex m;
    std::string pending;  // under m
    std::string line;     // the worker's own: formatted outside the lock
    std::uint64_t dropped = 0;  // under m
  };
  void run();
  void write_out();
  int open(const std::string& destination, std::string& why) const;

  std::string destination_;
  std::size_t buffer_bytes_;
  std::vector<std::unique_ptr<Buffer>> buffers_;
  std::atomic<bool> enabled_{false};
  std::atomic<std::uint64_t> written_{0};
  std::mutex fd_m_;  // the fd, its reopening and the writing
  int fd_ = -1;
  bool own_fd_ = false;
  std::atomic<bool> reopen_{false};
  std::mutex wake_m_;
  std::condition_variable wake_;
  bool stop_ = false;  // under wake_m_
  std::thread thread_;
};

}  // namespace pitstop::log
