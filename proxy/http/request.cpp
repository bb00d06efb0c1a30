#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "proxy/http/http.hpp"

namespace pitstop::http {

namespace bhttp = boost::beast::http;
using BeastRequest = bhttp::request<bhttp::string_body>;

namespace {
const BeastRequest& msg(const void* p) { return *static_cast<const BeastRequest*>(p); }
std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }
}  // namespace

Request::Request(const void* message, boost::asio::ip::tcp::endpoint peer) : message_(message), peer_(std::move(peer)) {}

Method Request::method() const {
  switch (msg(message_).method()) {
    case bhttp::verb::get: return Method::get;
    case bhttp::verb::head: return Method::head;
    case bhttp::verb::post: return Method::post;
    case bhttp::verb::put: return Method::put;
    case bhttp::verb::patch: return Method::patch;
    case bhttp::verb::delete_: return Method::delete_;
    case bhttp::verb::options: return Method::options;
    default: return Method::other;
  }
}

std::string_view Request::method_text() const { return sv(msg(message_).method_string()); }
std::string_view Request::target() const { return sv(msg(message_).target()); }

std::string_view Request::path() const {
  auto t = target();
  return t.substr(0, t.find('?'));
}

std::string_view Request::query() const {
  auto t = target();
  auto q = t.find('?');
  return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

std::string_view Request::header(std::string_view name) const {
  const auto& m = msg(message_);
  auto it = m.find(boost::beast::string_view(name.data(), name.size()));
  return it == m.end() ? std::string_view{} : sv(it->value());
}

namespace {
bhttp::field beast_field(Request::Field f) {
  switch (f) {
    case Request::Field::authorization: return bhttp::field::authorization;
    case Request::Field::cookie: return bhttp::field::cookie;
    case Request::Field::if_none_match: return bhttp::field::if_none_match;
    case Request::Field::x_forwarded_for: return bhttp::field::unknown;  // Beast has no enum
    case Request::Field::content_type: return bhttp::field::content_type;
  }
  return bhttp::field::unknown;
}
}  // namespace

std::string_view Request::header(Field f) const {
  const bhttp::field want = beast_field(f);
  if (want == bhttp::field::unknown) return header("X-Forwarded-For");
  // The parser already turned known names into enums: a scan of a few compares.
  for (const auto& field : msg(message_))
    if (field.name() == want) return sv(field.value());
  return {};
}

std::size_t Request::headers(Field f, std::string_view* out, std::size_t max) const {
  const bhttp::field want = beast_field(f);
  std::size_t n = 0;
  for (const auto& field : msg(message_)) {
    const bool match = want == bhttp::field::unknown ? boost::beast::iequals(field.name_string(), "X-Forwarded-For") : field.name() == want;
    if (!match) continue;
    if (n < max) out[n] = sv(field.value());
    ++n;
  }
  return n;
}

bool Request::has_header(std::string_view name) const {
  const auto& m = msg(message_);
  return m.find(boost::beast::string_view(name.data(), name.size())) != m.end();
}

std::string_view Request::body() const { return msg(message_).body(); }
bool Request::keep_alive() const { return msg(message_).keep_alive(); }
unsigned Request::version() const { return msg(message_).version(); }

}  // namespace pitstop::http
