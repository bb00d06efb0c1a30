// A run: the plan resolved from the command line and the workload, and the figures it produced.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/load/histogram.hpp"
#include "bench/load/workload.hpp"

namespace pitstop::load {

struct Credential {
  std::string user;
  std::string header;  // "Authorization: token key:secret\r\n"
};

struct Plan {
  const Workload* workload = nullptr;
  std::string url, host, port, host_header;
  bool open = false;                // open loop (--rate)
  std::uint64_t users = 0;          // closed: one connection each; open: credentials round-robin
  std::uint64_t threads = 1;
  std::uint64_t connections = 0;    // open loop pool
  double rate = 0;                  // open loop arrivals/s (an arrival: a read, or a write with its reads)
  std::uint64_t think_ms = 0;
  std::uint64_t timeout_ms = 5000;
  double duration_s = 0;            // 0: until max_requests (within the 3600 s cap)
  double warmup_s = 0;
  std::uint64_t max_requests = 0;   // 0: no limit
  std::uint64_t seed = 1;
  std::vector<Credential> credentials;
};

// Figures of one kind of request: a workload request by name, or a step of a write.
struct RequestStats {
  std::uint64_t requests = 0, errors = 0, limited = 0, hits = 0, misses = 0;
  Histogram latency;
  void merge(const RequestStats& o);
};

struct Stats {
  std::uint64_t requests = 0;   // every outcome: answers, failures, dropped arrivals
  std::uint64_t responses = 0;  // answered with an HTTP status
  Histogram latency;            // ns, answered requests only
  std::array<std::uint64_t, 1000> status{};
  std::uint64_t connect = 0, timeout = 0, io = 0, client = 0, server = 0, overload = 0;
  std::uint64_t limited = 0;  // 429: rate limits are part of the product, not errors
  std::uint64_t hits = 0, misses = 0;            // every answer with a Cache-Status hit / fwd
  std::uint64_t read_hits = 0, read_misses = 0;  // the workload's reads only (no write steps)
  std::uint64_t writes = 0, checks = 0, stale = 0, unchecked = 0;
  std::uint64_t retries = 0;  // GETs resent once on a fresh connection after the server closed an idle one
  std::vector<std::string> stale_examples;
  std::vector<RequestStats> by_request;  // indexed as request_names()

  std::uint64_t errors() const { return connect + timeout + io + client + server + overload; }
  void merge(const Stats& o);
};

struct Outcome {
  Stats stats;
  double measured_s = 0;  // the measured window (shorter when --requests or a signal ended it)
  bool interrupted = false;
};

// The labels of Stats::by_request: the workload's requests, then the steps of the writes.
std::vector<std::string> request_names(const Workload& w);

// Plays the plan against its URL: warm-up, then the measured window; progress on stderr once a
// second. False with `error` when the run could not start (the host does not resolve).
bool run(const Plan& plan, Outcome& out, std::string& error);

}  // namespace pitstop::load
