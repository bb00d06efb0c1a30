#pragma once
// The pitstop process: one Worker (io_context, listener, Redis clients, MariaDB pools) per thread,
// signal handling and graceful drain.
#include <memory>
#include <string>
#include <vector>

#include "proxy/config/config.hpp"

namespace pitstop::app {

struct Options {
  std::string port_file;  // when set, the bound port is written there once listening
};

// Loads and cross-checks what start-up loads besides the config (rules, named queries); throws
// config::ConfigError naming the file, the JSON path and the fix.
void check(const config::Config& cfg);

struct Shared;

// A reload's result: applied (with the settings it could not apply, which need a restart), or
// refused with why (the running config and rules stay).
struct Reloaded {
  bool ok = false;
  std::string error;
  std::vector<std::string> needs_restart;
  std::string digest;
};
// Reads the config file (with the PITSTOP_* overrides) and its rules again, checks them as
// --check-config does, and installs them for the requests that begin from now on. On the main
// thread (SIGHUP, POST /admin/reload).
Reloaded reload(Shared& shared);

// Runs until SIGTERM/SIGINT and the drain that follows. Returns the process exit code. Throws
// only for start-up failures (cannot bind, bad listen address).
int run(const config::Config& cfg, const Options& options);

}  // namespace pitstop::app
