#include <gtest/gtest.h>
#include <simdjson.h>

#include <random>

#include "proxy/json/writer.hpp"

using pitstop::json::Writer;

namespace {

// Parses `json` with simdjson (a strict validator) and returns the string value at key "s".
std::string roundtrip_string(const std::string& json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  auto err = parser.parse(json).get(doc);
  EXPECT_FALSE(err) << simdjson::error_message(err) << " in " << json;
  if (err) return {};
  std::string_view s;
  EXPECT_FALSE(doc["s"].get(s));
  return std::string(s);
}

std::string object_with(std::string_view value) {
  std::string out;
  Writer w(out);
  w.begin_object().member("s", value).end_object();
  return out;
}

}  // namespace

TEST(JsonWriter, WritesNestedStructuresCompactly) {
  std::string out;
  Writer w(out);
  w.begin_object();
  w.member("name", "SO-2026-00001");
  w.key("items").begin_array();
  w.begin_object().member("qty", 2).member("rate", 12.5).end_object();
  w.begin_object().member("qty", std::int64_t{-3}).key("note").null().end_object();
  w.end_array();
  w.member("ok", true);
  w.key("raw").raw("[1,2]");
  w.end_object();
  EXPECT_EQ(out, R"({"name":"SO-2026-00001","items":[{"qty":2,"rate":12.5},{"qty":-3,"note":null}],"ok":true,"raw":[1,2]})");
  simdjson::dom::parser p;
  EXPECT_FALSE(p.parse(out).error());
}

TEST(JsonWriter, EscapesQuotesBackslashesAndControlCharacters) {
  std::string nasty = "a\"b\\c\n\r\t\b\f";
  nasty.push_back('\0');
  nasty += "\x01\x1f end";
  auto json = object_with(nasty);
  EXPECT_EQ(roundtrip_string(json), nasty);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  EXPECT_NE(json.find("\\u0000"), std::string::npos);
}

TEST(JsonWriter, KeepsValidUtf8AndReplacesInvalidBytes) {
  const std::string valid = "Müller – 東京 🚗";
  EXPECT_EQ(roundtrip_string(object_with(valid)), valid);

  // Lone continuation byte, truncated sequence, overlong '/', a UTF-16 surrogate, > U+10FFFF.
  const std::string invalid[] = {"x\x80y", "x\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"};
  for (const auto& bad : invalid) {
    auto back = roundtrip_string(object_with(bad));
    EXPECT_NE(back.find("\xef\xbf\xbd"), std::string::npos) << "no U+FFFD for input of size " << bad.size();
  }
}

TEST(JsonWriter, EscapesJavaScriptLineSeparators) {
  auto json = object_with("a\u2028b\u2029c");
  EXPECT_NE(json.find("\\u2028"), std::string::npos);
  EXPECT_NE(json.find("\\u2029"), std::string::npos);
  EXPECT_EQ(roundtrip_string(json), "a\u2028b\u2029c");
}

TEST(JsonWriter, RandomBytesAlwaysProduceValidJson) {
  std::mt19937 rng(12345);
  simdjson::dom::parser parser;
  for (int round = 0; round < 2000; ++round) {
    std::string s(rng() % 64, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
    std::string out;
    Writer w(out);
    w.begin_object().member(s, s).end_object();  // hostile keys too
    ASSERT_FALSE(parser.parse(out).error()) << "round " << round;
  }
}

TEST(JsonWriter, NumbersPrintLikePythonRepr) {
  auto num = [](double d) {
    std::string s;
    pitstop::json::append_double(s, d);
    return s;
  };
  EXPECT_EQ(num(1500.0), "1500.0");
  EXPECT_EQ(num(0.1), "0.1");
  EXPECT_EQ(num(-2.5), "-2.5");
  EXPECT_EQ(num(0.0), "0.0");
  EXPECT_EQ(num(1e16), "1e+16");
  EXPECT_EQ(num(123456789012345.0), "123456789012345.0");
  EXPECT_EQ(num(1.5e-5), "1.5e-05");
  EXPECT_EQ(num(0.0001), "0.0001");
  EXPECT_EQ(num(std::numeric_limits<double>::quiet_NaN()), "null");
  EXPECT_EQ(num(std::numeric_limits<double>::infinity()), "null");
  std::string i;
  pitstop::json::append_int(i, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(i, "-9223372036854775808");
}

TEST(JsonWriter, FrappeTemporalFormats) {
  using pitstop::json::frappe_datetime;
  using pitstop::json::frappe_time;
  EXPECT_EQ(frappe_datetime("2026-01-31 10:00:00.000000"), "2026-01-31 10:00:00");
  EXPECT_EQ(frappe_datetime("2026-01-31 10:00:00.120000"), "2026-01-31 10:00:00.120000");
  EXPECT_EQ(frappe_datetime("2026-01-31 10:00:00.5"), "2026-01-31 10:00:00.500000");
  EXPECT_EQ(frappe_datetime("2026-01-31 10:00:00"), "2026-01-31 10:00:00");
  EXPECT_EQ(frappe_time("09:30:00"), "9:30:00");
  EXPECT_EQ(frappe_time("00:00:00.000000"), "0:00:00");
  EXPECT_EQ(frappe_time("25:00:01"), "1 day, 1:00:01");
  EXPECT_EQ(frappe_time("49:00:00"), "2 days, 1:00:00");
}
