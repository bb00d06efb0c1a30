#pragma once
// Writes around pitstop, seen as they commit: MariaDB's binary log, read with Connector/C's
// replication API (mariadb_rpl.h) on a thread of its own, since that API blocks. An outbox row
// that its writer will not deliver itself (a trigger's, another site's) wakes the outbox relay at
// once instead of at its next interval. The relay still does the delivering, on its cursor, so
// the binary log only says when to look; with the log off or unreadable, the relay's interval is
// the bound, as before.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "proxy/config/config.hpp"

namespace pitstop::invalidation {

struct BinlogSettings {
  config::MariaDb server;
  std::string site;
  // auto: use the binary log if the server writes one in ROW format and lets this user read it;
  // on: insist (keep trying, complain); off: never.
  std::string mode = "auto";
  std::chrono::seconds heartbeat{1};  // the server's heartbeat when idle; 3 missed = a dead link
};

class BinlogWatch {
 public:
  // `wake(id)` runs on the watch's thread after a commit with outbox rows to deliver, up to `id`;
  // never once stop() has returned.
  BinlogWatch(BinlogSettings settings, std::function<void(std::uint64_t)> wake);
  ~BinlogWatch();
  BinlogWatch(const BinlogWatch&) = delete;
  BinlogWatch& operator=(const BinlogWatch&) = delete;

  void start();
  // Ends the watch. A thread stuck in the library (connecting to a server that does not answer)
  // is left to finish on its own: it owns what it uses.
  void stop();

  // Read by /readyz from any thread.
  bool following() const;
  std::uint64_t wakes() const;
  // This site's own outbox rows seen and left to their writer (they never wake the relay).
  std::uint64_t own_rows() const;
  const std::string& mode() const { return mode_; }

 private:
  struct State;
  std::string mode_;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace pitstop::invalidation
