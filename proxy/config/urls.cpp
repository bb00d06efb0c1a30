#include "proxy/config/urls.hpp"

#include <charconv>

namespace pitstop::config {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out, std::string& why) {
  out.clear();
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      why = "a '%' escape needs two hex digits";
      return false;
    }
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) {
      why = "a '%' escape needs two hex digits";
      return false;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool parse_port(std::string_view s, std::uint16_t& port, bool allow_zero, std::string& why) {
  unsigned v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v > 65535 ||
      (v == 0 && !allow_zero)) {
    why = "the port must be a number 1..65535";
    if (allow_zero) why = "the port must be a number 0..65535 (0 picks a free port)";
    return false;
  }
  port = static_cast<std::uint16_t>(v);
  return true;
}

// Splits "host[:port]" (host may be "[v6]") into parts.
bool split_authority(std::string_view hp, std::string& host, std::string_view& port_text,
                     std::string& why) {
  port_text = {};
  if (!hp.empty() && hp.front() == '[') {
    auto close = hp.find(']');
    if (close == std::string_view::npos) {
      why = "an IPv6 address needs a closing ']'";
      return false;
    }
    host.assign(hp.substr(1, close - 1));
    auto rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        why = "expected ':' after ']'";
        return false;
      }
      port_text = rest.substr(1);
    }
  } else {
    auto colon = hp.rfind(':');
    if (colon == std::string_view::npos) {
      host.assign(hp);
    } else {
      host.assign(hp.substr(0, colon));
      port_text = hp.substr(colon + 1);
    }
  }
  if (host.empty()) {
    why = "the host is missing";
    return false;
  }
  for (char c : host) {
    if (c == '/' || c == '@' || c == ' ' || c == '?' || c == '#') {
      why = "the host contains '" + std::string(1, c) + "'";
      return false;
    }
  }
  return true;
}

}  // namespace

bool parse_host_port(std::string_view text, HostPort& out, std::string& why) {
  std::string_view port_text;
  if (!split_authority(text, out.host, port_text, why)) return false;
  if (port_text.empty()) {
    why = "the port is missing (host:port)";
    return false;
  }
  return parse_port(port_text, out.port, true, why);
}

bool parse_redis_url(std::string_view url, Redis& out, std::string& why) {
  constexpr std::string_view scheme = "redis://";
  if (url.substr(0, scheme.size()) != scheme) {
    why = "the URL must start with redis://";
    return false;
  }
  auto rest = url.substr(scheme.size());
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
  out.username.clear();
  out.password.clear();
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    auto userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      // redis://password@host is a common spelling for AUTH with the default user.
      if (!percent_decode(userinfo, out.password, why)) return false;
    } else {
      if (!percent_decode(userinfo.substr(0, colon), out.username, why)) return false;
      if (!percent_decode(userinfo.substr(colon + 1), out.password, why)) return false;
    }
  }
  std::string_view port_text;
  if (!split_authority(authority, out.host, port_text, why)) return false;
  out.port = 6379;
  if (!port_text.empty() && !parse_port(port_text, out.port, false, why)) return false;
  out.db = 0;
  if (!path.empty()) {
    int db = 0;
    auto r = std::from_chars(path.data(), path.data() + path.size(), db);
    if (r.ec != std::errc() || r.ptr != path.data() + path.size() || db < 0 || db > 1023) {
      why = "the database after '/' must be a number 0..1023";
      return false;
    }
    out.db = db;
  }
  out.url.assign(url);
  return true;
}

bool parse_http_url(std::string_view url, HostPort& out, std::string& why) {
  constexpr std::string_view scheme = "http://";
  if (url.substr(0, 8) == "https://") {
    why = "https upstreams are not supported: pitstop talks to the ERP over http, so run it beside the ERP (bench serves "
          "http://127.0.0.1:8000) or on a private network";
    return false;
  }
  if (url.substr(0, scheme.size()) != scheme) {
    why = "the URL must look like http://host:port";
    return false;
  }
  auto authority = url.substr(scheme.size());
  if (!authority.empty() && authority.back() == '/') authority.remove_suffix(1);
  if (authority.find_first_of("/?#") != std::string_view::npos) {
    why = "the URL is the ERP's base (http://host:port): no path, query or fragment";
    return false;
  }
  if (authority.find('@') != std::string_view::npos) {
    why = "no credentials in the URL: clients' own credentials are passed to the ERP";
    return false;
  }
  std::string_view port_text;
  if (!split_authority(authority, out.host, port_text, why)) return false;
  out.port = 80;
  return port_text.empty() || parse_port(port_text, out.port, false, why);
}

bool parse_mariadb_url(std::string_view url, MariaDb& out, std::string& why) {
  std::string_view rest;
  for (std::string_view scheme : {std::string_view("mariadb://"), std::string_view("mysql://")}) {
    if (url.substr(0, scheme.size()) == scheme) rest = url.substr(scheme.size());
  }
  if (rest.empty()) {
    why = "the URL must look like mariadb://user:password@host:port/database";
    return false;
  }
  auto at = rest.rfind('@');
  if (at == std::string_view::npos) {
    why = "the user is missing (mariadb://user:password@host:port/database)";
    return false;
  }
  auto userinfo = rest.substr(0, at);
  rest = rest.substr(at + 1);
  auto colon = userinfo.find(':');
  if (!percent_decode(userinfo.substr(0, colon), out.user, why)) return false;
  out.password.clear();
  if (colon != std::string_view::npos &&
      !percent_decode(userinfo.substr(colon + 1), out.password, why))
    return false;
  if (out.user.empty()) {
    why = "the user is empty";
    return false;
  }
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash + 1 >= rest.size()) {
    why = "the database is missing (…@host:port/database)";
    return false;
  }
  if (!percent_decode(rest.substr(slash + 1), out.database, why)) return false;
  if (out.database.find('/') != std::string::npos || out.database.find('?') != std::string::npos) {
    why = "the database name contains '/' or '?'";
    return false;
  }
  std::string_view port_text;
  if (!split_authority(rest.substr(0, slash), out.host, port_text, why)) return false;
  out.port = 3306;
  if (!port_text.empty() && !parse_port(port_text, out.port, false, why)) return false;
  return true;
}

}  // namespace pitstop::config
