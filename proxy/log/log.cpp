#include "proxy/log/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace pitstop::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

void set_level(Level lvl) { g_level.store(static_cast<int>(lvl), std::memory_order_relaxed); }
Level level() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }

bool parse_level(std::string_view text, Level& out) {
  for (int i = 0; i < 4; ++i) {
    if (text == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

std::string utc_text(std::chrono::system_clock::time_point tp, char sep, int digits, bool zulu) {
  using namespace std::chrono;
  const std::time_t t = system_clock::to_time_t(tp);
  long long frac = duration_cast<microseconds>(tp.time_since_epoch()).count() % 1000000;
  if (frac < 0) frac += 1000000;
  for (int d = 6; d > digits; --d) frac /= 10;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d%c%02d:%02d:%02d.%0*lld%s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, sep,
                tm.tm_hour, tm.tm_min, tm.tm_sec, digits, frac, zulu ? "Z" : "");
  return buf;
}

void write(Level lvl, std::string_view line) {
  const std::string stamp = utc_text(std::chrono::system_clock::now(), 'T', 3, true) + " ";
  std::string out;
  out.reserve(line.size() + 64);
  out += stamp;
  out += kNames[static_cast<int>(lvl)];
  out += ' ';
  out += line;
  out += '\n';
  // A short write to stderr is not worth retrying on the data plane.
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, out.data(), out.size());
}

}  // namespace pitstop::log
