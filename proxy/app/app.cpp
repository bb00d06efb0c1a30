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

}  // namespace

Shared::Shared(const config::Config& c)
    : cfg(c), rules(rules::RuleSet::load(c.rules_file, c, origin::make_origin)), l1(c.cache.l1_bytes) {
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

  for (auto& w : workers) w->start();
  log::info("pitstop ", PITSTOP_VERSION, " listening on ", endpoint.address().to_string(), ":", endpoint.port(), " with ",
            n, " worker", n == 1 ? "" : "s", " (config ", cfg.source, ", ", shared.rules->rules().size(), " rules from ",
            shared.rules->source(), ")");
  if (!options.port_file.empty()) {
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
