#include "proxy/app/app.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <atomic>
#include <csignal>
#include <fstream>
#include <iterator>

#include <openssl/evp.h>

#include "proxy/app/admin.hpp"
#include "proxy/app/worker.hpp"
#include "proxy/db/db.hpp"
#include "proxy/log/log.hpp"

namespace pitstop::app {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// Resident memory beyond L1 before freed heap memory is handed back (the bound users are
// promised is L1 plus 64 MiB).
constexpr std::size_t kTrimSlack = 40u << 20;

tcp::endpoint resolve_listen(const config::Config& cfg) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(cfg.listen.host, ec);
  if (!ec) return {addr, cfg.listen.port};
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(cfg.listen.host, std::to_string(cfg.listen.port), ec);
  if (ec || results.empty())
    throw std::runtime_error(cfg.source + ": $.listen: cannot resolve \"" + cfg.listen.host + "\": " + ec.message());
  return results.begin()->endpoint();
}

std::string file_digest(const std::vector<std::string>& files) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EVP_DigestUpdate(ctx, bytes.data(), bytes.size());
    EVP_DigestUpdate(ctx, "\0", 1);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < 8 && i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xF];
  }
  return out;
}

// The admin listener is a convenience, not the service: when its port is taken (another pitstop on
// this machine with the default), the proxy runs without it and says so.
std::uint16_t start_admin(const config::Config& cfg, http::Listener& listener) {
  if (!cfg.admin.enabled) return 0;
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(cfg.admin.listen.host == "localhost" ? "127.0.0.1" : cfg.admin.listen.host, ec);
  if (ec) {
    log::error("admin listener not started: \"", cfg.admin.listen.host, "\" is not an IP address (set admin.listen or PITSTOP_ADMIN_LISTEN)");
    return 0;
  }
  try {
    listener.bind(tcp::endpoint(addr, cfg.admin.listen.port));
    listener.start();
  } catch (const boost::system::system_error& e) {
    log::error("admin listener not started on ", cfg.admin.listen.host, ":", cfg.admin.listen.port, ": ", e.code().message(),
               " (set admin.listen or PITSTOP_ADMIN_LISTEN; \"off\" for none)");
    return 0;
  }
  log::info("admin listener on ", cfg.admin.listen.host, ":", listener.port(), cfg.admin.token.empty() ? "" : " (token required)");
  return listener.port();
}

void write_port(const std::string& file, std::uint16_t port) {
  const std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
  }
  std::rename(tmp.c_str(), file.c_str());
}

http::Settings admin_settings(const config::Config& c) {
  http::Settings s;
  s.max_header_bytes = c.limits.max_header_bytes;
  s.max_url_bytes = c.limits.max_url_bytes;
  s.max_body_bytes = 64 * 1024;  // purge and reload bodies are small
  s.max_connections = 64;
  s.header_read = c.timeouts.header_read;
  s.body_read = c.timeouts.body_read;
  s.idle_keepalive = c.timeouts.idle_keepalive;
  s.write = c.timeouts.write;
  return s;
}

}  // namespace

std::shared_ptr<const Live> load_live(std::shared_ptr<const config::Config> cfg) {
  auto live = std::make_shared<Live>();
  live->rules = rules::RuleSet::load(cfg->rules_file, *cfg, origin::make_origin);
  live->digest = file_digest({cfg->source, cfg->rules_file});
  live->cfg = std::move(cfg);
  return live;
}

Shared::Shared(const config::Config& c) : cfg(c), l1(c.cache.l1_bytes), live_(load_live(std::make_shared<const config::Config>(c))) {
  for (const auto& p : c.limiting.trusted_proxies) {
    std::string why;
    if (!trusted_proxies.add(p, why)) throw config::ConfigError(c.source + ": $.limiting.trusted_proxies: " + why);
  }
}

void check(const config::Config& cfg) { Shared shared(cfg); }

int run(const config::Config& cfg, const Options& options) {
  // hiredis and Connector/C write with write(2)/send(2): a peer that went away must be an error
  // code, not a signal that kills the process.
  std::signal(SIGPIPE, SIG_IGN);
  db::library_init();

  Shared shared(cfg);
  const int n = cfg.effective_workers();
  try {
    shared.access_log = std::make_unique<log::AccessLog>(cfg.access_log, n);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(cfg.source + ": $.log.access: " + e.what());
  }
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < n; ++i) workers.push_back(std::make_unique<Worker>(shared, i));

  tcp::endpoint endpoint = resolve_listen(cfg);
  try {
    workers[0]->listener().bind(endpoint);
    // With port 0 the first bind picks the port; the other workers join it.
    endpoint.port(workers[0]->listener().port());
    for (int i = 1; i < n; ++i) workers[i]->listener().bind(endpoint);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + cfg.listen.host + ":" + std::to_string(cfg.listen.port) + ": " +
                             e.code().message() + " (set \"listen\" in " + cfg.source + " or PITSTOP_LISTEN)");
  }

  asio::io_context main_ioc{1};
  asio::signal_set signals(main_ioc, SIGTERM, SIGINT);
  // Before the port file says pitstop is up: a signal sent once it is there must find them.
  // SIGUSR1: the access log's file was moved (logrotate); open it again.
  asio::signal_set usr1(main_ioc, SIGUSR1);
  std::function<void(boost::system::error_code, int)> on_usr1 = [&](boost::system::error_code ec, int) {
    if (ec) return;
    if (shared.access_log) shared.access_log->reopen();
    usr1.async_wait(on_usr1);
  };
  usr1.async_wait(on_usr1);
  // SIGHUP: read the config and rules again (as POST /admin/reload does).
  asio::signal_set hup(main_ioc, SIGHUP);
  std::function<void(boost::system::error_code, int)> on_hup = [&](boost::system::error_code ec, int) {
    if (ec) return;
    reload(shared);
    hup.async_wait(on_hup);
  };
  hup.async_wait(on_hup);
  std::vector<Worker*> worker_list;
  for (auto& w : workers) worker_list.push_back(w.get());
  Admin admin(main_ioc, shared, worker_list);
  http::Listener admin_listener(main_ioc, admin_settings(cfg), admin);
  const std::uint16_t admin_port = start_admin(cfg, admin_listener);

  for (auto& w : workers) w->start();
  log::info("pitstop ", PITSTOP_VERSION, " listening on ", endpoint.address().to_string(), ":", endpoint.port(), " with ",
            n, " worker", n == 1 ? "" : "s", " (config ", cfg.source, ", ", shared.live()->rules->rules().size(), " rules from ",
            shared.live()->rules->source(), ")");
  if (!options.port_file.empty()) {
    // The admin port first: whoever waits for the port file finds both.
    if (admin_port != 0) write_port(options.port_file + ".admin", admin_port);
    std::string tmp = options.port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << endpoint.port() << "\n";
    }
    std::rename(tmp.c_str(), options.port_file.c_str());
  }

  // Large answers (a day's schedule is 200 kB) come and go with every miss; glibc keeps what they
  // freed in its heaps. Handing it back keeps the resident size near L1 plus the buffers in use
  // (a fixed mmap threshold would do it too, at a page fault per page of every large answer).
  // Only when the excess is real: malloc_trim holds each heap's lock while it walks it, which
  // stalled the workers' allocations for up to 20 ms with a 256 MiB L1 under load.
  asio::steady_timer trim(main_ioc);
  const long page = ::sysconf(_SC_PAGESIZE);
  std::function<void(boost::system::error_code)> on_trim = [&](boost::system::error_code ec) {
    if (ec) return;
    long pages = 0, resident = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
      std::fclose(f);
    }
    const auto rss = static_cast<std::size_t>(resident) * static_cast<std::size_t>(page);
    if (resident == 0 || rss > shared.l1.stats().bytes + kTrimSlack) ::malloc_trim(0);
    trim.expires_after(std::chrono::seconds(5));
    trim.async_wait(on_trim);
  };
  trim.expires_after(std::chrono::seconds(5));
  trim.async_wait(on_trim);

  asio::steady_timer drain_deadline(main_ioc);
  bool stopping = false;
  int remaining = n;
  auto stop_all = [&] {
    usr1.cancel();
    hup.cancel();
    admin_listener.drain([] {});
    admin_listener.abort_all();
    trim.cancel();
    drain_deadline.cancel();
    signals.cancel();
    for (auto& w : workers) w->shutdown();
  };
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (stopping) {
      log::warn("second signal ", sig, ": stopping now");
      stop_all();
      return;
    }
    stopping = true;
    log::info("signal ", sig, ": draining (up to ", cfg.timeouts.drain.count(), " ms)");
    for (auto& w : workers) {
      w->drain([&main_ioc, &remaining, &stop_all] {
        // On the worker's thread: report to the main loop.
        asio::post(main_ioc, [&remaining, &stop_all] {
          if (--remaining == 0) {
            log::info("drained; exiting");
            stop_all();
          }
        });
      });
    }
    drain_deadline.expires_after(cfg.timeouts.drain);
    drain_deadline.async_wait([&](boost::system::error_code dec) {
      if (dec) return;
      log::warn("drain deadline passed; closing the connections still busy");
      stop_all();
    });
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  main_ioc.run();
  for (auto& w : workers) w->join();
  return 0;
}

}  // namespace pitstop::app
