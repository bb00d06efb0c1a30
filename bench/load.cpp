// pitstop-load: plays an ERP workload (bench/workloads/*.json) against a base URL and reports
// throughput, latency, statuses, errors, rate limiting, cache hits and stale reads after writes.
// Closed loop (users, one request at a time each) or open loop (a fixed arrival rate, latency
// from the intended send times). The last line on stdout is one JSON object with the figures.
#include <sys/resource.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "bench/load/run.hpp"
#include "bench/load/workload.hpp"
#include "proxy/json/writer.hpp"

namespace {

using namespace pitstop::load;
namespace json = pitstop::json;

constexpr std::string_view kUsage = R"(usage: pitstop-load --url http://HOST:PORT --workload FILE --credentials FILE [options]

  --url URL           base URL, http://host[:port] (no TLS, no path); only that host:port is contacted
  --workload FILE     workload JSON (bench/workloads/*.json)
  --credentials FILE  user<TAB>api_key<TAB>api_secret[<TAB>sid] per line (scripts/make-credentials);
                      user i sends line (i mod lines) as "Authorization: token key:secret"
  --dataset NAME      small | bench: picks the key counts of the workload (default small)
  --users N           virtual users; closed loop: one keep-alive connection each, up to 10000;
                      open loop: whose credentials the arrivals take in turn         1..100000
  --threads T         event-loop threads; users, connections and rate are split        1..64
  --duration S        measured seconds, after the warm-up                            0 < S <= 3600
  --requests N        stop after N measured requests (with --duration: whichever comes first)
  --warmup S          seconds run first and left out of every figure                 0..3600
  --rate R            open loop: R arrivals/s at fixed intervals; latency counts from
                      the intended send time (an arrival: a read, or a write with its reads)
  --connections N     open loop: connection pool, one request in flight each          1..10000
  --think-ms MS       closed loop: pause after each operation                          0..600000
  --timeout-ms MS     per-request deadline; a late request is a "timeout" error      1..600000
  --label TEXT        label for the JSON line (default: the workload's name)
  --seed N            seed of the key and request draws (default: the workload's, else 1)
  --json-only         print only the JSON line on stdout
  --help              this text

Values given here override the workload file's. Exit status: 0 after a run, 1 when it could not
start, 2 for a usage error.
)";

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "pitstop-load: %s\n(pitstop-load --help for usage)\n", what.c_str());
  std::exit(2);
}

std::uint64_t parse_uint(std::string_view opt, std::string_view v, std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t x = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || r.ec != std::errc{} || r.ptr != v.data() + v.size()) {
    if (!v.empty() && v[0] == '-') usage_error(std::string(opt) + ": must not be negative (got \"" + std::string(v) + "\")");
    usage_error(std::string(opt) + ": expected a whole number, got \"" + std::string(v) + "\"");
  }
  if (x < lo || x > hi)
    usage_error(std::string(opt) + ": " + std::string(v) + " is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  return x;
}

// lo_open: the value must be above lo rather than at least lo.
double parse_number(std::string_view opt, std::string_view v, double lo, double hi, bool lo_open) {
  double x = 0;
  auto r = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || r.ec != std::errc{} || r.ptr != v.data() + v.size() || !std::isfinite(x))
    usage_error(std::string(opt) + ": expected a number, got \"" + std::string(v) + "\"");
  if ((lo_open ? x <= lo : x < lo) || x > hi) {
    char buf[200];
    if (lo_open)
      std::snprintf(buf, sizeof buf, "%s: %s is out of range (above %g, at most %g)", std::string(opt).c_str(),
                    std::string(v).c_str(), lo, hi);
    else
      std::snprintf(buf, sizeof buf, "%s: %s is out of range (%g..%g)", std::string(opt).c_str(), std::string(v).c_str(), lo, hi);
    usage_error(buf);
  }
  return x;
}

struct Options {
  std::string url, workload, credentials, dataset = "small", label;
  std::optional<std::uint64_t> users, threads, connections, think_ms, timeout_ms, requests, seed;
  std::optional<double> duration, warmup, rate;
  bool json_only = false;
};

Options parse_options(int argc, char** argv) {
  Options o;
  std::set<std::string> seen;
  static const std::set<std::string> kValued = {"--url", "--workload", "--credentials", "--dataset", "--users",
                                                "--threads", "--duration", "--requests", "--warmup", "--rate",
                                                "--think-ms", "--connections", "--timeout-ms", "--label", "--seed"};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    if (arg == "--help" || arg == "-h") {
      std::fwrite(kUsage.data(), 1, kUsage.size(), stdout);
      std::exit(0);
    }
    const auto eq = arg.find('=');
    bool inline_value = false;
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
      inline_value = true;
    }
    if (arg == "--json-only") {
      if (inline_value) usage_error("--json-only takes no value");
      o.json_only = true;
      continue;
    }
    if (!kValued.count(arg)) usage_error("unknown option \"" + arg + "\"");
    if (!seen.insert(arg).second) usage_error(arg + " given twice");
    if (!inline_value) {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      value = argv[++i];
    }
    if (arg == "--url") o.url = value;
    else if (arg == "--workload") o.workload = value;
    else if (arg == "--credentials") o.credentials = value;
    else if (arg == "--dataset") o.dataset = value;
    else if (arg == "--label") o.label = value;
    else if (arg == "--users") o.users = parse_uint(arg, value, 1, 100000);
    else if (arg == "--threads") o.threads = parse_uint(arg, value, 1, 64);
    else if (arg == "--connections") o.connections = parse_uint(arg, value, 1, 10000);
    else if (arg == "--think-ms") o.think_ms = parse_uint(arg, value, 0, 600000);
    else if (arg == "--timeout-ms") o.timeout_ms = parse_uint(arg, value, 1, 600000);
    else if (arg == "--requests") o.requests = parse_uint(arg, value, 1, 1'000'000'000'000ULL);
    else if (arg == "--seed") o.seed = parse_uint(arg, value, 0, UINT64_MAX);
    else if (arg == "--duration") o.duration = parse_number(arg, value, 0, 3600, true);
    else if (arg == "--warmup") o.warmup = parse_number(arg, value, 0, 3600, false);
    else if (arg == "--rate") o.rate = parse_number(arg, value, 0, 10'000'000, true);
  }
  if (o.url.empty()) usage_error("--url is required");
  if (o.workload.empty()) usage_error("--workload is required");
  if (o.credentials.empty()) usage_error("--credentials is required");
  if (o.dataset != "small" && o.dataset != "bench") usage_error("--dataset: \"" + o.dataset + "\" is not small or bench");
  if (o.label.size() > 200) usage_error("--label: longer than 200 characters");
  for (char c : o.label)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) usage_error("--label: has control characters");
  return o;
}

// http://host[:port][/] only: the load goes to exactly this host and port.
void parse_url(const std::string& url, Plan& plan) {
  const std::string_view scheme = "http://";
  if (url.rfind("https://", 0) == 0) usage_error("--url: https is not supported; give the plain http:// address");
  if (url.rfind(scheme, 0) != 0) usage_error("--url: \"" + url + "\" is not http://host[:port]");
  std::string_view rest = std::string_view(url).substr(scheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos)
    usage_error("--url: \"" + url + "\" has a path, query or user; give only http://host[:port]");
  std::string_view host = rest, port = "80";
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos) usage_error("--url: unclosed '[' in \"" + url + "\"");
    host = rest.substr(1, close - 1);
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') usage_error("--url: \"" + url + "\" is not http://host[:port]");
      port = after.substr(1);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) usage_error("--url: \"" + url + "\" names no host");
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_'))
      usage_error("--url: \"" + std::string(host) + "\" is not a host name or address");
  const auto p = parse_uint("--url port", port, 1, 65535);
  plan.host = std::string(host);
  plan.port = std::to_string(p);
  const bool v6 = host.find(':') != std::string_view::npos;
  plan.host_header = v6 ? "[" + plan.host + "]" : plan.host;
  if (p != 80) plan.host_header += ":" + plan.port;
  plan.url = "http://" + plan.host_header;
}

std::vector<Credential> read_credentials(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) usage_error("--credentials: " + file + ": cannot be read (" + std::strerror(errno) + ")");
  std::vector<Credential> out;
  std::string line;
  std::size_t n = 0;
  auto token_ok = [](std::string_view t, bool colon_ok) {
    if (t.empty() || t.size() > 512) return false;
    for (char c : t)
      if (c <= ' ' || c > '~' || (!colon_ok && c == ':')) return false;
    return true;
  };
  while (std::getline(in, line)) {
    ++n;
    if (n > 1'000'000) usage_error("--credentials: " + file + ": more than 1000000 lines");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string_view> f;
    std::string_view rest = line;
    for (;;) {
      const auto tab = rest.find('\t');
      f.push_back(rest.substr(0, tab));
      if (tab == std::string_view::npos) break;
      rest.remove_prefix(tab + 1);
    }
    const std::string where = "--credentials: " + file + ":" + std::to_string(n) + ": ";
    if (f.size() < 3 || f.size() > 4) usage_error(where + "expected user<TAB>api_key<TAB>api_secret[<TAB>sid]");
    // The key and secret go into a header: no spaces, controls or (in the key) colons.
    if (!token_ok(f[1], false)) usage_error(where + "the api_key is empty or has spaces, control characters or ':'");
    if (!token_ok(f[2], true)) usage_error(where + "the api_secret is empty or has spaces or control characters");
    Credential c;
    c.user = std::string(f[0]);
    c.header = "Authorization: token " + std::string(f[1]) + ":" + std::string(f[2]) + "\r\n";
    out.push_back(std::move(c));
  }
  if (out.empty()) usage_error("--credentials: " + file + ": no credentials (scripts/make-credentials N writes them)");
  return out;
}

Plan make_plan(const Options& o, const Workload& w) {
  Plan p;
  p.workload = &w;
  parse_url(o.url, p);
  p.open = o.rate.has_value() || w.mode == "open";
  p.users = o.users.value_or(w.users);
  p.threads = o.threads.value_or(w.threads);
  p.rate = o.rate.value_or(w.rate);
  p.timeout_ms = o.timeout_ms.value_or(w.timeout_ms);
  p.warmup_s = o.warmup.value_or(w.warmup_s);
  p.seed = o.seed.value_or(w.seed);
  p.max_requests = o.requests.value_or(0);
  // --requests alone runs until that many (within the 3600 s cap), not the workload's duration.
  p.duration_s = o.duration ? *o.duration : (o.requests ? 0.0 : w.duration_s);
  if (p.open) {
    if (o.think_ms) usage_error("--think-ms is for the closed loop; an open loop sends at --rate");
    p.connections = o.connections.value_or(w.connections ? w.connections : p.users);
    if (p.threads > p.connections)
      usage_error("threads (" + std::to_string(p.threads) + ") are more than the " + std::to_string(p.connections) + " connections");
    if (p.rate / static_cast<double>(p.threads) < 0.001) usage_error("--rate: too low for " + std::to_string(p.threads) + " threads");
  } else {
    if (o.connections)
      usage_error("--connections is for the open loop (--rate); a closed loop opens one connection per user (--users)");
    if (p.users > 10000)
      usage_error("users (" + std::to_string(p.users) + "): a closed loop opens one connection per user, at most 10000");
    p.connections = p.users;
    p.think_ms = o.think_ms.value_or(w.think_ms);
    if (p.threads > p.users)
      usage_error("threads (" + std::to_string(p.threads) + ") are more than the " + std::to_string(p.users) + " users");
  }
  return p;
}

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

void print_table(const Plan& plan, const Workload& w, const Outcome& out, const std::string& label) {
  const Stats& s = out.stats;
  const auto u = [](std::uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("pitstop-load %s (%s)\n", label.c_str(), w.file.c_str());
  if (plan.open)
    std::printf("  target       %s, open loop at %g/s on %llu connections, %llu users, %llu thread(s), dataset %s, seed %llu\n",
                plan.url.c_str(), plan.rate, u(plan.connections), u(plan.users), u(plan.threads), w.dataset.c_str(), u(plan.seed));
  else
    std::printf("  target       %s, closed loop, %llu users, think %llu ms, %llu thread(s), dataset %s, seed %llu\n",
                plan.url.c_str(), u(plan.users), u(plan.think_ms), u(plan.threads), w.dataset.c_str(), u(plan.seed));
  std::printf("  measured     %.3f s after %g s of warm-up%s\n", out.measured_s, plan.warmup_s,
              out.interrupted ? " (interrupted)" : "");
  const double rps = out.measured_s > 0 ? static_cast<double>(s.responses) / out.measured_s : 0;
  std::printf("  requests     %llu, %llu answered (%.1f/s)\n", u(s.requests), u(s.responses), rps);
  std::printf("  latency us   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f%s\n",
              us(s.latency.percentile(0.50)), us(s.latency.percentile(0.90)), us(s.latency.percentile(0.99)),
              us(s.latency.percentile(0.999)), us(s.latency.max()), s.latency.mean() / 1000.0,
              plan.open ? "  (from intended send times)" : "");
  std::printf("  status      ");
  bool any = false;
  for (std::size_t i = 0; i < s.status.size(); ++i)
    if (s.status[i]) std::printf(" %zu: %llu", i, u(s.status[i])), any = true;
  std::printf("%s\n", any ? "" : " none");
  const double rate = s.requests ? static_cast<double>(s.errors()) / static_cast<double>(s.requests) : 0;
  std::printf("  errors       %llu (%.3f %%): connect %llu, timeout %llu, io %llu, 4xx %llu, 5xx %llu, overload %llu\n",
              u(s.errors()), rate * 100, u(s.connect), u(s.timeout), u(s.io), u(s.client), u(s.server), u(s.overload));
  std::printf("  rate limited %llu (429, not counted as errors)\n", u(s.limited));
  if (s.read_hits + s.read_misses)
    std::printf("  cache        hit ratio %.2f %% over the workload's reads (%llu hits, %llu misses, from Cache-Status)\n",
                100.0 * static_cast<double>(s.read_hits) / static_cast<double>(s.read_hits + s.read_misses), u(s.read_hits),
                u(s.read_misses));
  if (s.hits + s.misses != s.read_hits + s.read_misses)
    std::printf("               %.2f %% over every answer, the writes' own reads included (%llu hits, %llu misses)\n",
                100.0 * static_cast<double>(s.hits) / static_cast<double>(s.hits + s.misses), u(s.hits), u(s.misses));
  if (s.hits + s.misses == 0)
    std::printf("  cache        no Cache-Status hits or misses seen\n");
  if (w.writes.any())
    std::printf("  writes       %llu done; checks %llu, stale reads %llu, unchecked %llu\n", u(s.writes), u(s.checks),
                u(s.stale), u(s.unchecked));
  if (s.retries) std::printf("  retries      %llu GETs resent after the server closed an idle connection\n", u(s.retries));
  const auto names = request_names(w);
  std::printf("  %-32s %10s %8s %8s %7s %10s %10s\n", "by request", "requests", "errors", "429s", "hit %", "p50 us", "p99 us");
  for (std::size_t i = 0; i < s.by_request.size() && i < names.size(); ++i) {
    const RequestStats& r = s.by_request[i];
    if (!r.requests) continue;
    const std::string hit = r.hits + r.misses ? fmt("%.1f", 100.0 * static_cast<double>(r.hits) / static_cast<double>(r.hits + r.misses)) : "-";
    std::printf("  %-32s %10llu %8llu %8llu %7s %10.1f %10.1f\n", names[i].substr(0, 32).c_str(), u(r.requests), u(r.errors),
                u(r.limited), hit.c_str(), us(r.latency.percentile(0.5)), us(r.latency.percentile(0.99)));
  }
  for (const auto& e : s.stale_examples) std::printf("  stale read   %s\n", e.c_str());
}

// Figures rounded for reading (0.1 µs, 1 ms of duration); the keys are bench/compare's interface.
double round_to(double v, double step) {
  const double per = std::round(1.0 / step);  // divided, not multiplied: 1114.1, not 1114.1000000000001
  return std::round(v * per) / per;
}
double ratio(std::uint64_t a, std::uint64_t b) { return static_cast<double>(a) / static_cast<double>(b); }

std::string json_line(const Plan& plan, const Workload& w, const Outcome& out, const std::string& label) {
  const Stats& s = out.stats;
  std::string j;
  json::Writer o(j);
  o.begin_object();
  o.member("label", label).member("workload", w.name).member("url", plan.url);
  o.member("mode", plan.open ? "open" : "closed").member("dataset", w.dataset);
  o.member("users", std::uint64_t{plan.users}).member("threads", std::uint64_t{plan.threads});
  o.member("connections", std::uint64_t{plan.connections});
  if (plan.open) o.member("rate", plan.rate);
  else o.key("rate").null();
  o.member("think_ms", std::uint64_t{plan.think_ms}).member("seed", std::uint64_t{plan.seed});
  o.member("warmup_s", round_to(plan.warmup_s, 0.001)).member("duration_s", round_to(out.measured_s, 0.001));
  o.member("requests", s.requests).member("responses", s.responses);
  // Throughput counts answers (429s included): failures and dropped arrivals are not served.
  o.member("rps", round_to(out.measured_s > 0 ? static_cast<double>(s.responses) / out.measured_s : 0, 0.1));
  o.key("latency_us").begin_object();
  o.member("p50", round_to(us(s.latency.percentile(0.50)), 0.1)).member("p90", round_to(us(s.latency.percentile(0.90)), 0.1));
  o.member("p99", round_to(us(s.latency.percentile(0.99)), 0.1)).member("p999", round_to(us(s.latency.percentile(0.999)), 0.1));
  o.member("max", round_to(us(s.latency.max()), 0.1)).member("mean", round_to(s.latency.mean() / 1000.0, 0.1));
  o.end_object();
  o.member("latency_from", plan.open ? "intended" : "sent");
  o.key("status").begin_object();
  for (std::size_t i = 0; i < s.status.size(); ++i)
    if (s.status[i]) o.member(std::to_string(i), s.status[i]);
  o.end_object();
  o.key("errors").begin_object();
  o.member("connect", s.connect).member("timeout", s.timeout).member("io", s.io);
  o.member("4xx", s.client).member("5xx", s.server).member("overload", s.overload);
  o.end_object();
  o.member("error_rate", s.requests ? ratio(s.errors(), s.requests) : 0.0);
  o.member("rate_limited", s.limited);
  // hit_ratio: the workload's reads; hit_ratio_all: every answer, the writes' own reads included.
  if (s.read_hits + s.read_misses) o.member("hit_ratio", ratio(s.read_hits, s.read_hits + s.read_misses));
  else o.key("hit_ratio").null();
  o.member("hits", s.read_hits).member("misses", s.read_misses);
  if (s.hits + s.misses) o.member("hit_ratio_all", ratio(s.hits, s.hits + s.misses));
  else o.key("hit_ratio_all").null();
  o.member("writes", s.writes).member("checks", s.checks).member("stale_reads", s.stale);
  o.member("unchecked", s.unchecked).member("retries", s.retries).member("interrupted", out.interrupted);
  o.key("by_request").begin_object();
  const auto names = request_names(w);
  for (std::size_t i = 0; i < s.by_request.size() && i < names.size(); ++i) {
    const RequestStats& r = s.by_request[i];
    if (!r.requests) continue;
    o.key(names[i]).begin_object();
    o.member("requests", r.requests).member("errors", r.errors).member("rate_limited", r.limited);
    o.member("hits", r.hits).member("misses", r.misses);
    o.member("p50", round_to(us(r.latency.percentile(0.5)), 0.1)).member("p99", round_to(us(r.latency.percentile(0.99)), 0.1));
    o.end_object();
  }
  o.end_object();
  o.end_object();
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opts = parse_options(argc, argv);
  Workload workload;
  std::string error;
  if (!load_workload(opts.workload, opts.dataset, workload, error)) usage_error("--workload: " + error);
  const Plan plan = [&] {
    Plan p = make_plan(opts, workload);
    p.credentials = read_credentials(opts.credentials);
    return p;
  }();
  if (plan.credentials.size() < plan.users)
    std::fprintf(stderr, "pitstop-load: warning: %zu credential line(s) for %llu users: user i uses line i mod %zu\n",
                 plan.credentials.size(), static_cast<unsigned long long>(plan.users), plan.credentials.size());
  const std::string label = opts.label.empty() ? workload.name : opts.label;
  // Each connection is a descriptor: take what the hard limit allows, and say so when even that
  // is short (the connections past it would fail as "connect" errors).
  rlimit nofile{};
  const std::uint64_t sockets = plan.open ? plan.connections : plan.users;
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &nofile);
      ::getrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur != RLIM_INFINITY && sockets + 32 > nofile.rlim_cur)
      std::fprintf(stderr, "pitstop-load: warning: %llu connections but only %llu file descriptors (ulimit -n)\n",
                   static_cast<unsigned long long>(sockets), static_cast<unsigned long long>(nofile.rlim_cur));
  }

  Outcome out;
  if (!run(plan, out, error)) {
    std::fprintf(stderr, "pitstop-load: %s\n", error.c_str());
    return 1;
  }
  if (!opts.json_only) print_table(plan, workload, out, label);
  const std::string line = json_line(plan, workload, out, label);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  return 0;
}
