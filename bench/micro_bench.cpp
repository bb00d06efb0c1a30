// Micro-benchmarks of the pieces of a cached read: rule matching and key building, L1 under
// contention, the Redis entry codec, the GCRA decision and a hit from request bytes to response
// bytes. They print ns/op; the load figures come from bench/compare.
#include <benchmark/benchmark.h>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstdlib>
#include <string>

#include "proxy/cache/cache.hpp"
#include "proxy/config/config.hpp"
#include "proxy/http/http.hpp"
#include "proxy/http/internal.hpp"
#include "proxy/limits/limits.hpp"
#include "proxy/rules/rules.hpp"

namespace {

namespace bhttp = boost::beast::http;
using namespace pitstop;

const config::Config& cfg() {
  static const config::Config c = [] {
    const char* const env[] = {nullptr};
    return config::load(PITSTOP_SOURCE_DIR "/config/pitstop.json", env);
  }();
  return c;
}

const rules::RuleSet& ruleset() {
  static const auto set = rules::RuleSet::load(cfg().rules_file, cfg());
  return *set;
}

const char kSummaryPath[] = "/api/method/universal_workshop.api.get_customer_summary";
const char kSummaryQuery[] = "customer=CUST-00001&_=1732867200";

// Route, parameters and key of a hot endpoint, as the router does before looking in L1.
void BM_RuleMatchAndKey(benchmark::State& state) {
  const auto& rs = ruleset();
  for (auto _ : state) {
    auto path = rules::decode_path(kSummaryPath);
    rules::Values captures;
    const rules::Rule* rule = rs.match(http::Method::get, *path, captures);
    auto query = rules::parse_query(kSummaryQuery);
    auto params = rules::bind_params(*rule, *query);
    auto key = rules::cache_key("workshop.local", *rule, captures, *params, "", "user001@workshop.test");
    benchmark::DoNotOptimize(key.data());
  }
}
BENCHMARK(BM_RuleMatchAndKey);

// A resource path: the template walk instead of the exact-path lookup.
void BM_RuleMatchResourceDoc(benchmark::State& state) {
  const auto& rs = ruleset();
  for (auto _ : state) {
    auto path = rules::decode_path("/api/resource/Service%20Order/SO-2026-00042");
    rules::Values captures;
    const rules::Rule* rule = rs.match(http::Method::get, *path, captures);
    auto key = rules::cache_key("workshop.local", *rule, captures, {}, "", "user001@workshop.test");
    benchmark::DoNotOptimize(key.data());
  }
}
BENCHMARK(BM_RuleMatchResourceDoc);

cache::EntryPtr make_entry(std::string key, std::size_t body_bytes) {
  auto e = std::make_shared<cache::Entry>();
  e->key = std::move(key);
  e->body = std::string(body_bytes, 'x');
  e->etag = cache::strong_etag(e->body);
  e->tags = {"customer:CUST-00001", "doc:Customer/CUST-00001"};
  e->stored_ms = cache::now_ms();
  e->ttl_ms = 3'600'000;
  return e;
}

// L1 gets (90 %) and puts over 10,000 keys; threads > 1 measure the shards' locks under contention.
void BM_L1GetPut(benchmark::State& state) {
  static cache::L1* l1 = nullptr;
  static std::vector<std::string> keys;
  if (state.thread_index() == 0) {
    l1 = new cache::L1(256u << 20);
    keys.clear();
    for (int i = 0; i < 10000; ++i) {
      keys.push_back("workshop.local\x1f" "customer_summary\x1f" + std::to_string(i));
      l1->put(make_entry(keys.back(), 800));
    }
  }
  // Each thread its own pre-built entries: the benchmark measures L1, not make_shared.
  std::vector<cache::EntryPtr> mine;
  for (int i = 0; i < 64; ++i) mine.push_back(make_entry("workshop.local\x1f" "customer_summary\x1f" + std::to_string(i * 97), 800));
  std::uint64_t x = 88172645463325252ull + static_cast<std::uint64_t>(state.thread_index());
  const std::int64_t now = cache::now_ms();
  for (auto _ : state) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (x % 10 == 0) {
      l1->put(mine[x % mine.size()]);
    } else {
      auto e = l1->get(keys[x % keys.size()], now);
      benchmark::DoNotOptimize(e.get());
    }
  }
  if (state.thread_index() == 0) {
    delete l1;
    l1 = nullptr;
  }
}
BENCHMARK(BM_L1GetPut)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

void BM_EntryEncode(benchmark::State& state) {
  auto e = make_entry("workshop.local\x1f" "customer_summary\x1f" "CUST-00001", static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto bytes = cache::encode(*e);
    benchmark::DoNotOptimize(bytes.data());
  }
}
BENCHMARK(BM_EntryEncode)->Arg(800)->Arg(16384);

void BM_EntryDecode(benchmark::State& state) {
  auto bytes = cache::encode(*make_entry("workshop.local\x1f" "customer_summary\x1f" "CUST-00001", static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    auto e = cache::decode(bytes);
    benchmark::DoNotOptimize(e->body.data());
  }
}
BENCHMARK(BM_EntryDecode)->Arg(800)->Arg(16384);

// The GCRA decision as the local limiter takes it (the same arithmetic as the Redis script,
// without the round trip), admitting and over the limit.
void BM_GcraDecision(benchmark::State& state) {
  limits::LocalLimiter limiter;
  const limits::Policy p{"get", state.range(0) ? 1'000'000'000 : 1, 60, 0};
  std::int64_t now = 1'000'000;
  const std::string key = "user:user001@workshop.test";
  for (auto _ : state) {
    now += 10;
    auto d = limiter.decide(key, p, now);
    benchmark::DoNotOptimize(d.allowed);
  }
  state.SetLabel(state.range(0) ? "admitting" : "refusing");
}
BENCHMARK(BM_GcraDecision)->Arg(1)->Arg(0);

// A hit without the sockets: request bytes parsed by Beast, routed, keyed, found in L1, and the
// response head written (the body goes out from the entry itself). Identity and the limiter
// are left out: they are a cache lookup and the GCRA above.
void BM_HitRequestToResponseBytes(benchmark::State& state) {
  const auto& rs = ruleset();
  cache::L1 l1(64u << 20);
  const std::string key_user = "user001@workshop.test";
  {
    rules::Values captures;
    auto path = rules::decode_path(kSummaryPath);
    const rules::Rule* rule = rs.match(http::Method::get, *path, captures);
    auto params = rules::bind_params(*rule, *rules::parse_query(kSummaryQuery));
    l1.put(make_entry(rules::cache_key("workshop.local", *rule, captures, *params, "", key_user), 800));
  }
  const std::string raw = std::string("GET ") + kSummaryPath + "?" + kSummaryQuery +
                          " HTTP/1.1\r\nHost: pitstop\r\nUser-Agent: bench\r\nAccept: */*\r\n"
                          "Authorization: token 8d36dd8ad4194ffd26c496c3:5434c3e4e952619a58c3972c\r\n\r\n";
  const boost::asio::ip::tcp::endpoint peer;
  std::string out;
  for (auto _ : state) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(16384);
    boost::system::error_code ec;
    parser.put(boost::asio::buffer(raw), ec);
    if (ec || !parser.is_done()) {
      state.SkipWithError("parse failed");
      break;
    }
    auto msg = parser.release();
    http::Request req(&msg, peer);
    auto path = rules::decode_path(req.path());
    rules::Values captures;
    const rules::Rule* rule = rs.match(req.method(), *path, captures);
    auto query = rules::parse_query(req.query());
    auto params = rules::bind_params(*rule, *query);
    auto key = rules::cache_key("workshop.local", *rule, captures, *params, "", key_user);
    auto e = l1.get(key, cache::now_ms());
    http::Response r;
    r.status = e->status;
    r.set_header("ETag", e->etag);
    r.set_header("Cache-Status", "pitstop; hit; ttl=" + std::to_string(e->ttl_left_s(cache::now_ms())) + "; detail=l1");
    r.shared_body = std::shared_ptr<const std::string>(e, &e->body);
    out.clear();
    http::write_head(out, r, true, r.body_view().size());
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_HitRequestToResponseBytes);

}  // namespace
