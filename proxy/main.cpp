// pitstop: a caching and rate-limiting HTTP proxy for the Universal Workshop ERP.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include "proxy/app/app.hpp"
#include "proxy/auth/auth.hpp"
#include "proxy/invalidation/triggers.hpp"
#include "proxy/rules/rules.hpp"
#include "proxy/config/config.hpp"
#include "proxy/log/log.hpp"

extern char** environ;

namespace {

constexpr const char* kUsage =
    "usage: pitstop [--config FILE] [--port-file FILE]\n"
    "       pitstop --check-config FILE      validate FILE (with PITSTOP_* overrides); exit 0 or 2\n"
    "       pitstop --list-env [--config FILE]  list the PITSTOP_* variables that override settings\n"
    "       pitstop --print-triggers [--config FILE]  print the SQL triggers (sql/triggers.sql) for the rules\n"
    "       pitstop --encrypt-secret [--config FILE]  read a secret on stdin, print it Fernet-encrypted\n"
    "                                         with auth.encryption_key, as Frappe stores it in __Auth\n"
    "       pitstop --version | --help\n"
    "The config file defaults to $PITSTOP_CONFIG, else config/pitstop.json.\n";

int usage_error(const std::string& why) {
  std::cerr << "pitstop: " << why << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  std::string check_path;
  bool list_env = false;
  bool encrypt = false;
  bool print_triggers = false;
  pitstop::app::Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    if (arg == "--config") {
      const char* v = value("--config");
      if (!v) return usage_error("--config needs a file");
      config_path = v;
    } else if (arg == "--check-config") {
      const char* v = value("--check-config");
      if (!v) return usage_error("--check-config needs a file");
      check_path = v;
    } else if (arg == "--port-file") {
      const char* v = value("--port-file");
      if (!v) return usage_error("--port-file needs a file");
      options.port_file = v;
    } else if (arg == "--list-env") {
      list_env = true;
    } else if (arg == "--print-triggers") {
      print_triggers = true;
    } else if (arg == "--encrypt-secret") {
      encrypt = true;
    } else if (arg == "--version") {
      std::cout << "pitstop " << PITSTOP_VERSION << "\n";
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      return usage_error("unknown argument \"" + arg + "\"");
    }
  }
  if (config_path.empty()) {
    const char* env = std::getenv("PITSTOP_CONFIG");
    config_path = (env && *env) ? env : "config/pitstop.json";
  }

  if (!check_path.empty()) {
    try {
      auto cfg = pitstop::config::load(check_path, environ);
      pitstop::app::check(cfg);
      for (const auto& w : cfg.warnings) std::cerr << "pitstop: warning: " << w << "\n";
      std::cout << check_path << ": ok\n";
      return 0;
    } catch (const pitstop::config::ConfigError& e) {
      std::cerr << "pitstop: " << e.what() << "\n";
      return 2;
    }
  }

  pitstop::config::Config cfg;
  try {
    cfg = pitstop::config::load(config_path, environ);
  } catch (const pitstop::config::ConfigError& e) {
    std::cerr << "pitstop: " << e.what() << "\n";
    return 2;
  }

  if (print_triggers) {
    try {
      auto rules = pitstop::rules::RuleSet::load(cfg.rules_file, cfg);
      std::cout << pitstop::invalidation::trigger_sql(*rules);
      return 0;
    } catch (const pitstop::config::ConfigError& e) {
      std::cerr << "pitstop: " << e.what() << "\n";
      return 2;
    }
  }

  if (encrypt) {
    auto fernet = pitstop::auth::Fernet::from_key(cfg.auth.encryption_key);
    if (!fernet) {
      std::cerr << "pitstop: auth.encryption_key is not a Fernet key\n";
      return 2;
    }
    std::string secret;
    std::getline(std::cin, secret);
    if (secret.empty()) return usage_error("--encrypt-secret reads the secret from stdin");
    std::cout << fernet->encrypt(secret) << "\n";
    return 0;
  }

  if (list_env) {
    for (const auto& v : pitstop::config::env_variables(cfg))
      std::cout << "| `" << v.name << "` | `" << v.path << "` | " << v.type << " | " << v.help << " |\n";
    return 0;
  }

  pitstop::log::Level level;
  if (pitstop::log::parse_level(cfg.log_level, level)) pitstop::log::set_level(level);
  for (const auto& w : cfg.warnings) pitstop::log::warn(w);
  try {
    return pitstop::app::run(cfg, options);
  } catch (const pitstop::config::ConfigError& e) {
    pitstop::log::error(e.what());
    return 2;
  } catch (const std::exception& e) {
    pitstop::log::error(e.what());
    return 1;
  }
}
