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

std::string_view Request::header(Field f) const {
  bhttp::field want = bhttp::field::authorization;
  switch (f) {
    case Field::authorization: want = bhttp::field::authorization; break;
    case Field::cookie: want = bhttp::field::cookie; break;
    case Field::if_none_match: want = bhttp::field::if_none_match; break;
    case Field::x_forwarded_for: return header("X-Forwarded-For");  // Beast has no enum
    case Field::content_type: want = bhttp::field::content_type; break;
  }
  // The parser already turned known names into enums: a scan of a few compares.
  for (const auto& field : msg(message_))
    if (field.name() == want) return sv(field.value());
  return {};
}

bool Request::has_header(std::string_view name) const {
  const auto& m = msg(message_);
  return m.find(boost::beast::string_view(name.data(), name.size())) != m.end();
}

std::string_view Request::body() const { return msg(message_).body(); }
bool Request::keep_alive() const { return msg(message_).keep_alive(); }
unsigned Request::version() const { return msg(message_).version(); }

}  // namespace pitstop::http
