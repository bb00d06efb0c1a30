#pragma once
// Minimal line logger: one write(2) per line so that lines from worker threads never interleave.
#include <chrono>
#include <sstream>
#include <string>
#include <string_view>

namespace pitstop::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
Level level();
bool parse_level(std::string_view text, Level& out);
void write(Level level, std::string_view line);

// `tp` in UTC as "YYYY-MM-DD<sep>HH:MM:SS.<digits of fraction>", "Z" appended when `zulu`:
// ISO 8601 for logs and events (sep 'T'), Frappe's datetime text for SQL (sep ' ', no Z).
std::string utc_text(std::chrono::system_clock::time_point tp, char sep, int digits, bool zulu);

template <class... Args>
void emit(Level lvl, const Args&... args) {
  if (lvl < level()) return;
  std::ostringstream os;
  (os << ... << args);
  write(lvl, os.str());
}

template <class... Args> void debug(const Args&... a) { emit(Level::debug, a...); }
template <class... Args> void info(const Args&... a) { emit(Level::info, a...); }
template <class... Args> void warn(const Args&... a) { emit(Level::warn, a...); }
template <class... Args> void error(const Args&... a) { emit(Level::error, a...); }

}  // namespace pitstop::log
