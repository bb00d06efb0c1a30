// What a front proxy must refuse in a request head before it reads a body (RFC 9112 §3.2, §3.2.2,
// §5.2, §6.1, §6.3): a body the next hop could frame differently is the way to request smuggling.
#include <cctype>

#include <boost/beast/core/string.hpp>

#include "proxy/http/framing.hpp"

namespace pitstop::http {

namespace bhttp = boost::beast::http;
using boost::beast::iequals;

namespace {

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

bool tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The transfer codings of every Transfer-Encoding line, in order, as one list (§5.3: repeated
// lines are one comma-separated list). A coding may carry parameters (";q=…" is not allowed
// here, but "gzip;level=1" is a coding we do not understand either way).
struct Codings {
  std::size_t lines = 0;
  std::size_t count = 0;
  std::size_t chunked = 0;
  bool last_chunked = false;
  bool malformed = false;
};

Codings transfer_codings(const BeastRequest& m) {
  Codings c;
  for (auto it = m.find(bhttp::field::transfer_encoding); it != m.end() && it->name() == bhttp::field::transfer_encoding; ++it) {
    ++c.lines;
    std::string_view rest = sv(it->value());
    while (true) {
      const auto comma = rest.find(',');
      std::string_view item = trim_ows(rest.substr(0, comma));
      std::string_view name = trim_ows(item.substr(0, item.find(';')));
      if (!item.empty()) {
        ++c.count;
        for (char ch : name)
          if (!tchar(ch)) c.malformed = true;
        if (name.empty()) c.malformed = true;
        c.last_chunked = iequals(name, "chunked") && name.size() == item.size();
        if (iequals(name, "chunked")) ++c.chunked;
      }
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return c;
}

// host = IP-literal / IPv4address / reg-name (RFC 3986 §3.2.2), then an optional ":" port.
bool valid_authority(std::string_view a) {
  if (a.empty()) return false;
  std::string_view host = a, port;
  if (a.front() == '[') {
    const auto close = a.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char ch : a.substr(1, close - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(ch)) || ch == ':' || ch == '.')) return false;
    host = a.substr(0, close + 1);
    const auto after = a.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return false;
      port = after.substr(1);
    }
  } else {
    const auto colon = a.rfind(':');
    if (colon != std::string_view::npos) {
      host = a.substr(0, colon);
      port = a.substr(colon + 1);
    }
    if (host.empty()) return false;
    for (char ch : host) {
      const bool unreserved = std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
      const bool sub_delim = std::string_view("!$&'()*+,;=").find(ch) != std::string_view::npos;
      if (!unreserved && !sub_delim && ch != '%') return false;
    }
  }
  if (port.size() > 5) return false;
  for (char ch : port)
    if (ch < '0' || ch > '9') return false;
  return true;
}

Problem bad(std::string message) { return Problem{400, "BadRequest", std::move(message)}; }

// Absolute-form ("http://host/path?q") becomes the origin-form it carries, and its authority
// replaces Host (§3.2.2). Asterisk-form is for OPTIONS only; authority-form (CONNECT) is a
// tunnel, which a reverse proxy does not open.
std::optional<Problem> normalise_target(BeastRequest& m) {
  std::string_view t = sv(m.target());
  if (!t.empty() && t.front() == '/') return std::nullopt;
  if (t == "*" && m.method() == bhttp::verb::options) return std::nullopt;
  if (m.method() == bhttp::verb::connect) return Problem{405, "MethodNotAllowed", "CONNECT is not served: pitstop is not a forward proxy"};
  std::size_t skip = 0;
  if (t.size() > 7 && iequals(t.substr(0, 7), "http://")) skip = 7;
  else if (t.size() > 8 && iequals(t.substr(0, 8), "https://")) skip = 8;
  if (skip == 0) return bad("The request target must be a path (origin-form) or an absolute http(s) URL");
  const std::string_view rest = t.substr(skip);
  const auto end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, end);
  if (authority.find('@') != std::string_view::npos || !valid_authority(authority))
    return bad("The request target's authority is not a valid host[:port]");
  const std::string_view tail = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (!tail.empty() && tail.front() == '#') return bad("The request target carries a fragment");
  // A path-less target ("http://host", "http://host?q") means "/". (Built without assigning a
  // literal: GCC 12 under ASan reports a bogus overflow there, -Wstringop-overflow.)
  std::string path(tail.empty() || tail.front() == '?' ? 1 : 0, '/');
  path.append(tail);
  const std::string host(authority);
  m.target(path);
  m.set(bhttp::field::host, host);
  return std::nullopt;
}

std::optional<Problem> check_host(const BeastRequest& m) {
  std::size_t n = 0;
  std::string_view value;
  for (auto it = m.find(bhttp::field::host); it != m.end() && it->name() == bhttp::field::host; ++it) {
    ++n;
    value = sv(it->value());
  }
  if (n == 0) return m.version() >= 11 ? std::optional<Problem>(bad("An HTTP/1.1 request must carry a Host header")) : std::nullopt;
  if (n > 1) return bad("The request carries more than one Host header");
  if (!valid_authority(value)) return bad("The Host header is not a valid host[:port]");
  return std::nullopt;
}

std::optional<Problem> check_transfer_encoding(const BeastRequest& m) {
  const Codings c = transfer_codings(m);
  if (c.lines == 0) return std::nullopt;
  if (m.version() < 11) return bad("Transfer-Encoding is not allowed in an HTTP/1.0 request");
  if (c.malformed || c.count == 0) return bad("The Transfer-Encoding header is malformed");
  if (!c.last_chunked) return bad("The final transfer coding of a request must be chunked");
  if (c.chunked > 1) return bad("chunked is applied more than once");
  if (c.count > 1) return Problem{501, "NotImplemented", "Only the chunked transfer coding is understood"};
  if (m.find(bhttp::field::content_length) != m.end()) return bad("A request may not carry both Transfer-Encoding and Content-Length");
  return std::nullopt;
}

}  // namespace

bool has_obs_fold(std::string_view head) {
  // A field line that begins with whitespace continues the previous one (§5.2): refused rather
  // than unfolded, since the next hop may unfold it differently or not at all.
  for (std::size_t at = head.find('\n'); at != std::string_view::npos && at + 1 < head.size(); at = head.find('\n', at + 1))
    if (head[at + 1] == ' ' || head[at + 1] == '\t') return true;
  return false;
}

std::optional<Problem> check_head(BeastRequest& m) {
  if (auto r = normalise_target(m)) return r;
  if (auto r = check_host(m)) return r;
  return check_transfer_encoding(m);
}

}  // namespace pitstop::http
