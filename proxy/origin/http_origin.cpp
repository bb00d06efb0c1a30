// The http origin: a rule's reads fetched from the ERP itself (upstream.url) with the client's
// own credentials, and cached like the sql origin's by the rule's category, scope and tags.
//
// Frappe answers every request of a session with the session's cookies again (sid, and the
// user's system_user, full_name, user_id, user_image), and an API-key request with sid=Guest:
// such an echo restates what the client already holds and is dropped from a kept answer. Any
// other cookie (a new session, one of the ERP's own) makes the answer this client's alone: it is
// passed on whole and never kept. So is any answer but a 200.
#include <cctype>

#include <simdjson.h>

#include <algorithm>

#include <boost/beast/core/string.hpp>

#include "proxy/auth/auth.hpp"
#include "proxy/origin/frappe_values.hpp"

#include "proxy/origin/kinds.hpp"

namespace pitstop::origin {

namespace asio = boost::asio;
using boost::system::result;

namespace {

// The largest answer the http origin reads; a larger one is a 502 (and belongs in a relay).
constexpr std::size_t kMaxAnswerBytes = 16u << 20;

std::string_view cookie_name(std::string_view set_cookie) { return set_cookie.substr(0, set_cookie.find('=')); }

std::string_view cookie_value(std::string_view set_cookie) {
  auto eq = set_cookie.find('=');
  if (eq == std::string_view::npos) return {};
  auto value = set_cookie.substr(eq + 1);
  return value.substr(0, value.find(';'));
}

// The sid the request carried ("Guest" when none): the one an echo restates.
std::string request_sid(std::string_view cookie_header) {
  const auto sid = auth::sid_cookie(cookie_header);
  return sid.empty() ? std::string("Guest") : std::string(sid);
}

bool session_echo(std::string_view set_cookie, const std::string& sid) {
  const auto name = cookie_name(set_cookie);
  if (name == "sid") return cookie_value(set_cookie) == sid;
  return name == "system_user" || name == "full_name" || name == "user_id" || name == "user_image";
}

// The target the ERP gets: the path as sent and the rule's parameters as bound, so that the
// ERP's answer depends on nothing the cache key does not hold.
std::string target(const Ask& ask) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  auto encode = [](std::string& out, std::string_view text) {
    for (unsigned char c : text) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
        out += static_cast<char>(c);
      } else {
        out += '%';
        out += kHex[c >> 4];
        out += kHex[c & 15];
      }
    }
  };
  std::string out = ask.sent.path;
  char sep = '?';
  for (const auto& [name, value] : ask.params.items) {
    out += sep;
    sep = '&';
    encode(out, name);
    out += '=';
    encode(out, value);
  }
  return out;
}

void append_header(std::string& lines, std::string_view name, std::string_view value) {
  lines.append(name);
  lines += ": ";
  for (char c : value) lines += (c == '\r' || c == '\n') ? ' ' : c;
  lines += "\r\n";
}

class HttpOrigin final : public Origin {
 protected:
  asio::awaitable<result<Answer, http::Problem>> answer(const rules::Rule&, const Ask& ask, Context& ctx) const override {
    http::Upstream* up = ctx.upstream();
    if (!up) co_return http::Problem{502, "BadGateway", "No ERP to ask: upstream.url is not set", false};
    http::OutgoingRequest get;
    get.target = target(ask);
    get.headers.emplace_back("Accept", "application/json");
    if (!ask.sent.host.empty()) get.headers.emplace_back("Host", ask.sent.host);
    if (!ask.sent.authorization.empty()) get.headers.emplace_back("Authorization", ask.sent.authorization);
    if (!ask.sent.cookie.empty()) get.headers.emplace_back("Cookie", ask.sent.cookie);
    if (!ask.sent.accept_language.empty()) get.headers.emplace_back("Accept-Language", ask.sent.accept_language);
    auto got = co_await up->send(get, kMaxAnswerBytes);
    if (!got) co_return got.error();
    co_return shape(std::move(*got), request_sid(ask.sent.cookie));
  }

 private:
  static Answer shape(http::IncomingAnswer got, const std::string& sid) {
    Answer out;
    out.status = got.status;
    out.body = std::move(got.body);
    bool own_cookie = false;
    for (const auto& [name, value] : got.headers)
      if (boost::beast::iequals(name, "Set-Cookie") && !session_echo(value, sid)) own_cookie = true;
    out.no_store = own_cookie || got.status != 200;
    for (const auto& [name, value] : got.headers) {
      if (boost::beast::iequals(name, "Content-Type")) {
        out.content_type = value;
        continue;
      }
      // A kept answer is everyone's: only what the answer is (its type) stays with it. One that
      // is not kept goes back as the ERP gave it, cookies included; pitstop sets the caching
      // fields and the date itself.
      if (!out.no_store || boost::beast::iequals(name, "Cache-Control") || boost::beast::iequals(name, "Date") ||
          boost::beast::iequals(name, "Vary") || boost::beast::iequals(name, "Server"))
        continue;
      append_header(out.headers, name, value);
    }
    return out;
  }
};

}  // namespace

std::shared_ptr<const Origin> http_origin() { return std::make_shared<HttpOrigin>(); }

namespace {

// The row as stored before the write (its columns' values), for the tags of what it was.
asio::awaitable<std::vector<std::string>> tags_before(Context& ctx, const rules::Doctype& d, const std::string& name) {
  std::vector<std::string> tags;
  if (name.empty()) co_return tags;
  auto catalog = co_await ctx.catalog();
  if (!catalog || !(*catalog)->table(d.name)) co_return tags;
  std::vector<Sql> sql;
  sql.push_back({"SELECT * FROM " + frappe::quote_ident(d.table) + " WHERE `name` = ?", {name}});
  auto ran = co_await run_statements(ctx.primary(), sql);
  if (!ran || (*ran)[0].rows.empty()) co_return tags;
  const auto& r = (*ran)[0];
  rules::Values row;
  for (std::size_t c = 0; c < r.columns.size(); ++c)
    if (r.rows[0][c]) row.items.emplace_back(r.columns[c].name, *r.rows[0][c]);
  co_return rules::row_tags(d, row);
}

// The document the ERP answered with ({"data": {...}}), for the tags of what it is now.
std::vector<std::string> tags_after(const rules::Doctype& d, const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::object data;
  if (parser.parse(body).at_key("data").get(data)) return {};
  rules::Values row;
  for (auto field : data) {
    std::string_view text;
    if (!field.value.get(text)) {
      row.items.emplace_back(std::string(field.key), std::string(text));
    } else if (field.value.is_int64() || field.value.is_uint64() || field.value.is_double()) {
      row.items.emplace_back(std::string(field.key), simdjson::minify(field.value));
    }
  }
  if (!row.find("name")) return {};
  return rules::row_tags(d, row);
}

}  // namespace

asio::awaitable<result<WrittenByErp, http::Problem>> forward_write(Context& ctx, const rules::Doctype& d, const WriteToErp& w) {
  http::Upstream* up = ctx.upstream();
  if (!up) co_return http::Problem{502, "BadGateway", "No ERP to ask: upstream.url is not set", false};
  // Read before the write goes: afterwards the old values are gone.
  auto before = co_await tags_before(ctx, d, w.name);
  http::OutgoingRequest request{w.target, w.headers, w.method, w.body};
  auto got = co_await up->send(request, kMaxAnswerBytes);
  if (!got) co_return got.error();
  WrittenByErp out;
  out.status = got->status;
  out.body = std::move(got->body);
  for (const auto& [name, value] : got->headers) {
    if (boost::beast::iequals(name, "Content-Type")) out.content_type = value;
    else if (!boost::beast::iequals(name, "Date") && !boost::beast::iequals(name, "Server")) append_header(out.headers, name, value);
  }
  if (out.status < 200 || out.status >= 300) co_return out;
  out.tags = std::move(before);
  auto after = tags_after(d, out.body);
  out.tags.insert(out.tags.end(), after.begin(), after.end());
  // A delete answers "ok", an insert may name nothing: the doctype's lists change either way.
  out.tags.push_back("doctype:" + d.name);
  if (!w.name.empty()) out.tags.push_back("doc:" + d.name + "/" + w.name);
  std::sort(out.tags.begin(), out.tags.end());
  out.tags.erase(std::unique(out.tags.begin(), out.tags.end()), out.tags.end());
  co_return out;
}

}  // namespace pitstop::origin
