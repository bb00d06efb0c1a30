// The JSON writer on the shapes pitstop writes: Frappe documents and error bodies.
#include <benchmark/benchmark.h>

#include "proxy/http/http.hpp"
#include "proxy/json/writer.hpp"

namespace {

void BM_WriteServiceOrder(benchmark::State& state) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    pitstop::json::Writer w(out);
    w.begin_object().key("data").begin_object();
    w.member("name", "SO-2026-00042").member("customer", "CUST-00017").member("vehicle", "VEH-00023");
    w.member("status", "In Progress").member("service_date", "2026-03-14");
    w.member("estimated_cost", 1250.5).member("total_amount", 1312.75).member("docstatus", 0);
    w.member("description", "Brake pads \"front\" replaced;\nrotor resurfaced");
    w.key("items").begin_array();
    for (int i = 0; i < 3; ++i)
      w.begin_object().member("item_code", "ITEM-00100").member("qty", 2.0).member("rate", 45.0).end_object();
    w.end_array().end_object().end_object();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_WriteServiceOrder);

void BM_EscapeString(benchmark::State& state) {
  const std::string plain(static_cast<std::size_t>(state.range(0)), 'a');
  std::string mixed;
  for (std::size_t i = 0; mixed.size() < plain.size(); ++i) mixed += (i % 16 == 0) ? "\"\n\u00fc" : "abcdefgh";
  const std::string& input = state.range(1) ? mixed : plain;
  std::string out;
  for (auto _ : state) {
    out.clear();
    pitstop::json::append_string(out, input);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * input.size()));
}
BENCHMARK(BM_EscapeString)->Args({64, 0})->Args({64, 1})->Args({4096, 0})->Args({4096, 1});

void BM_Double(benchmark::State& state) {
  std::string out;
  double v = 1312.75;
  for (auto _ : state) {
    out.clear();
    pitstop::json::append_double(out, v);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_Double);

void BM_FrappeErrorBody(benchmark::State& state) {
  for (auto _ : state) {
    auto r = pitstop::http::error_response(404, "DoesNotExistError", "Service Order SO-2026-99999 not found");
    benchmark::DoNotOptimize(r.body.data());
  }
}
BENCHMARK(BM_FrappeErrorBody);

}  // namespace
