// The metrics' arithmetic and text format, and the access log's lines, redaction and buffering.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "proxy/log/access.hpp"
#include "proxy/metrics/metrics.hpp"
#include "tests/support/support.hpp"

namespace {

using namespace pitstop;
namespace fs = std::filesystem;

TEST(Metrics, HistogramBucketsSumAndQuantiles) {
  metrics::Histogram h;
  for (int i = 0; i < 90; ++i) h.observe(0.0003);  // the 500 µs bucket
  for (int i = 0; i < 10; ++i) h.observe(0.2);     // the 250 ms bucket
  h.observe(20);                                    // above 10 s
  EXPECT_EQ(h.count, 101u);
  EXPECT_NEAR(h.sum, 90 * 0.0003 + 2 + 20, 1e-9);
  EXPECT_EQ(h.counts[3], 90u);
  EXPECT_EQ(h.counts.back(), 1u);
  EXPECT_GT(h.quantile(0.5), 0.00025);
  EXPECT_LE(h.quantile(0.5), 0.0005);
  EXPECT_GT(h.quantile(0.95), 0.1);
  EXPECT_LE(h.quantile(0.95), 0.25);
  EXPECT_EQ(metrics::Histogram{}.quantile(0.99), 0);
  metrics::Histogram other;
  other.observe(0.00001);  // below the first bound: the first bucket
  h.merge(other);
  EXPECT_EQ(h.count, 102u);
  EXPECT_EQ(h.counts[0], 1u);
}

TEST(Metrics, WorkersSumIntoOneTextThatParsesBack) {
  metrics::Sink a, b;
  a.request("service_catalog", "get", 200, "read", 0.0002);
  a.request("service_catalog", "get", 200, "read", 0.0004);
  b.request("service_catalog", "get", 200, "read", 0.002);
  b.request("", "post", 404, "other", 0.001);
  a.served("service_catalog", "service_catalog", "l1_hit");
  b.served("service_catalog", "service_catalog", "l1_hit");
  b.served("service_catalog", "service_catalog", "stored");
  a.limit("get", "redis", true);
  b.limit("get", "local", false);
  b.mariadb.observe(0.003);
  metrics::Sample sa, sb;
  a.into(sa);
  b.into(sb);
  sa.merge(sb);
  // A label value with a quote, a backslash and a newline must come out escaped.
  sa.add("pitstop_test_gauge", metrics::Type::gauge, "a gauge", {{"odd", "a\"b\\c\nd"}}, 2);
  const auto text = sa.text();
  const auto p = test::parse_prometheus(text);
  EXPECT_EQ(p.types.at("pitstop_requests_total"), "counter");
  EXPECT_EQ(p.types.at("pitstop_request_duration_seconds"), "histogram");
  EXPECT_EQ(p.sum("pitstop_requests_total", {{"rule", "service_catalog"}, {"status", "200"}}), 3);
  EXPECT_EQ(p.sum("pitstop_requests_total", {{"method", "post"}, {"status", "404"}}), 1);
  EXPECT_EQ(p.sum("pitstop_cache_outcomes_total", {{"outcome", "l1_hit"}}), 2);
  EXPECT_EQ(p.sum("pitstop_cache_outcomes_total", {{"outcome", "stored"}, {"category", "service_catalog"}}), 1);
  EXPECT_EQ(p.sum("pitstop_ratelimit_decisions_total", {{"decided_by", "local"}, {"result", "refused"}}), 1);
  EXPECT_EQ(p.sum("pitstop_request_duration_seconds_count", {{"path", "read"}}), 3);
  EXPECT_EQ(p.sum("pitstop_request_duration_seconds_bucket", {{"path", "read"}, {"le", "0.0005"}}), 2);
  EXPECT_EQ(p.sum("pitstop_request_duration_seconds_bucket", {{"path", "read"}, {"le", "+Inf"}}), 3);
  EXPECT_EQ(p.sum("pitstop_mariadb_query_duration_seconds_count"), 1);
  EXPECT_EQ(p.sum("pitstop_test_gauge", {{"odd", "a\"b\\c\nd"}}), 2);
  // Buckets are cumulative and end with +Inf equal to the count.
  double last = -1;
  for (const auto& s : p.samples) {
    if (s.name != "pitstop_request_duration_seconds_bucket" || s.labels.at("path") != "read") continue;
    EXPECT_GE(s.value, last);
    last = s.value;
  }
  EXPECT_EQ(last, 3);
}

TEST(Metrics, TheParserRefusesMalformedText) {
  EXPECT_THROW(test::parse_prometheus("pitstop_x 1\n"), std::runtime_error);  // no TYPE
  EXPECT_THROW(test::parse_prometheus("# TYPE a counter\na{b=\"c} 1\n"), std::runtime_error);
  EXPECT_THROW(test::parse_prometheus("# TYPE a counter\na one\n"), std::runtime_error);
  EXPECT_NO_THROW(test::parse_prometheus("# TYPE a counter\na{b=\"c\"} 1\n"));
}

TEST(AccessLog, SecretValuesAreRedactedWhateverTheirSpelling) {
  EXPECT_EQ(log::redact_target("/api/x?a=1&api_secret=s3cr3t&b=2"), "/api/x?a=1&api_secret=REDACTED&b=2");
  EXPECT_EQ(log::redact_target("/api/x?PASSWORD=p&usr=x"), "/api/x?PASSWORD=REDACTED&usr=x");
  EXPECT_EQ(log::redact_target("/api/x?sid=abc&token=t&Api_Key=k&pwd=1"), "/api/x?sid=REDACTED&token=REDACTED&Api_Key=REDACTED&pwd=REDACTED");
  EXPECT_EQ(log::redact_target("/p?&&=&key"), "/p?&&=&key");  // empty pieces and a name without value survive
  EXPECT_EQ(log::redact_target("/no/query"), "/no/query");
  EXPECT_EQ(log::redact_target("/p?fields=[\"name\"]"), "/p?fields=[\"name\"]");
}

TEST(AccessLog, LinesAreJsonWhateverTheRequestHeld) {
  log::AccessRecord r;
  r.time = std::chrono::system_clock::now();
  r.request_id = "abc";
  r.client = "10.0.0.1";
  r.user = "u@x";
  r.method = "GET";
  const std::string hostile = std::string("/p\"\\\n\x01\xff\xfe?password=\"x\"");
  r.target = hostile;
  r.rule = "rule";
  r.status = 200;
  r.bytes = 12;
  r.cache = "l1_hit";
  r.total_ms = 0.1234567;
  r.remaining = 7;
  std::string line;
  log::format_access(line, r);
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(line).get(doc), simdjson::SUCCESS) << line;
  EXPECT_EQ(std::string_view(doc["path"].get_string().value()).find("\"x\""), std::string_view::npos);
  EXPECT_EQ(doc["status"].get_uint64().value(), 200u);
  EXPECT_EQ(doc["ratelimit_remaining"].get_int64().value(), 7);
  EXPECT_NEAR(doc["total_ms"].get_double().value(), 0.123, 1e-9);
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(AccessLog, AFullBufferDropsAndCountsInsteadOfWaiting) {
  const auto file = test::scratch_dir() / "access-drop.log";
  log::AccessLog a(file.string(), 1, 1000);  // about 4 lines
  log::AccessRecord r;
  r.time = std::chrono::system_clock::now();
  r.method = "GET";
  r.target = "/x";
  for (int i = 0; i < 50; ++i) a.write(0, r);  // faster than the writer wakes
  a.flush();
  const auto lines = lines_of(file);
  EXPECT_GT(a.dropped(), 0u);
  EXPECT_EQ(lines.size() + a.dropped(), 50u);
  EXPECT_EQ(a.written(), lines.size());
  a.write(7, r);  // a worker that does not exist is ignored, not a crash
}

TEST(AccessLog, ReopenFollowsARotatedFileAndABadTargetKeepsTheOld) {
  const auto file = test::scratch_dir() / "access-rotate.log";
  log::AccessLog a(file.string(), 2);
  log::AccessRecord r;
  r.time = std::chrono::system_clock::now();
  r.method = "GET";
  r.target = "/before";
  a.write(1, r);
  a.flush();
  fs::rename(file, file.string() + ".1");
  a.reopen();
  r.target = "/after";
  a.write(0, r);
  a.flush();
  ASSERT_EQ(lines_of(file.string() + ".1").size(), 1u);
  const auto now = lines_of(file);
  ASSERT_EQ(now.size(), 1u);
  EXPECT_NE(now[0].find("/after"), std::string::npos);
  std::string why;
  EXPECT_FALSE(a.retarget("/nonexistent-dir/x/access.log", why));
  EXPECT_NE(why.find("/nonexistent-dir/x/access.log"), std::string::npos);
  a.write(0, r);
  a.flush();
  EXPECT_EQ(lines_of(file).size(), 2u);
  EXPECT_THROW(log::AccessLog("/nonexistent-dir/y.log", 1), std::runtime_error);
}

}  // namespace
