#include <unistd.h>

#include "proxy/app/app.hpp"
#include "proxy/app/shared.hpp"
#include "proxy/log/log.hpp"

extern char** environ;

namespace pitstop::app {

Reloaded reload(Shared& shared) {
  Reloaded out;
  try {
    auto next = std::make_shared<config::Config>(config::load(shared.cfg.source, environ));
    out.needs_restart = config::keep_restart_only(shared.cfg, *next);
    for (const auto& p : next->limiting.trusted_proxies) {
      limits::TrustedProxies check;
      std::string why;
      if (!check.add(p, why)) throw config::ConfigError(next->source + ": $.limiting.trusted_proxies: " + why);
    }
    log::Level level;
    if (!log::parse_level(next->log_level, level)) throw config::ConfigError(next->source + ": $.log_level: not a level");
    const std::string access = next->access_log;
    auto live = load_live(std::move(next));
    // Last, since it cannot be taken back: a file that cannot be opened refuses the whole reload.
    if (shared.access_log && access != shared.access_log->destination()) {
      std::string why;
      if (!shared.access_log->retarget(access, why)) throw config::ConfigError(shared.cfg.source + ": $.log.access: " + why);
    }
    log::set_level(level);
    out.digest = live->digest;
    shared.install(std::move(live));
    out.ok = true;
    ++shared.reloads_ok;
    shared.last_reload_error.clear();
    std::string restart;
    for (const auto& p : out.needs_restart) {
      if (!restart.empty()) restart += ", ";
      restart += p;
    }
    log::info("reloaded ", shared.cfg.source, " (digest ", out.digest, ")",
              restart.empty() ? std::string() : "; needs a restart to change: " + restart);
  } catch (const config::ConfigError& e) {
    out.error = e.what();
    ++shared.reloads_failed;
    shared.last_reload_error = out.error;
    log::error("reload refused, the previous config and rules stay: ", out.error);
  }
  return out;
}

}  // namespace pitstop::app
