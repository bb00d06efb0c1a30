#include <ctime>
#include <stdexcept>
#include <string_view>

#include <boost/throw_exception.hpp>

#include "proxy/http/internal.hpp"
#include "proxy/json/writer.hpp"

namespace pitstop::http {

namespace {

// RFC 9110 wants a Date on every response; formatting it once a second per thread is enough.
std::string_view http_date() {
  thread_local std::time_t last = 0;
  thread_local char buf[64];
  thread_local std::size_t len = 0;
  std::time_t now = std::time(nullptr);
  if (now != last) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    len = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    last = now;
  }
  return {buf, len};
}

void append_clean(std::string& out, std::string_view v) {
  // Header values come from our own code, but may carry user data: never let one end the line.
  const std::size_t at = out.size();
  out.append(v);
  if (v.find_first_of("\r\n") == std::string_view::npos) return;
  for (std::size_t i = at; i < out.size(); ++i)
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
}

bool is_frappe_exception(std::string_view t) {
  static constexpr std::string_view kNames[] = {
      "ValidationError", "DoesNotExistError", "PermissionError", "AuthenticationError",
      "TooManyRequestsError", "TimestampMismatchError", "DuplicateEntryError", "MandatoryError",
      "LinkValidationError", "CSRFTokenError", "SessionExpired", "InvalidAuthorizationHeader",
      "InvalidAuthorizationPrefix", "InvalidAuthorizationToken", "DataError", "QueryTimeoutError",
      "OutgoingEmailError", "UniqueValidationError", "CharacterLengthExceededError", "InvalidStatusError",
      "InvalidSignatureError", "RateLimitExceededError", "PageDoesNotExistError", "LinkExistsError",
      "QueryDeadlockError", "NameError", "InvalidNameError", "DocstatusTransitionError", "UpdateAfterSubmitError",
      "CannotChangeConstantError"};
  for (auto n : kNames)
    if (n == t) return true;
  return false;
}

}  // namespace

const char* reason_phrase(unsigned status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
  }
}

void write_head(std::string& out, const Response& r, bool keep_alive, std::size_t content_length) {
  out.append("HTTP/1.1 ");
  json::append_uint(out, r.status);
  out.push_back(' ');
  out.append(reason_phrase(r.status));
  out.append("\r\nServer: pitstop\r\nDate: ");
  out.append(http_date());
  // 304 and 204 carry no body; a Content-Length on a 304 would describe the cached one.
  const bool bodiless = r.status == 304 || r.status == 204;
  if (!r.content_type.empty() && !bodiless) {
    out.append("\r\nContent-Type: ");
    append_clean(out, r.content_type);
  }
  if (!bodiless) {
    out.append("\r\nContent-Length: ");
    json::append_uint(out, content_length);
  }
  if (!keep_alive) out.append("\r\nConnection: close");
  out.append("\r\n");
  out.append(r.headers);
  out.append("\r\n");
}

void Response::set_header(std::string_view name, std::string_view value) {
  if (headers.empty()) headers.reserve(256);  // a hit's ETag, Cache-Status and RateLimit fields
  append_clean(headers, name);
  headers.append(": ");
  append_clean(headers, value);
  headers.append("\r\n");
}

void throw_exception_from_error(const Problem& p, const boost::source_location& loc) {
  boost::throw_exception(std::runtime_error(p.message), loc);
}

Response error_response(unsigned status, std::string_view exc_type, std::string_view message) {
  // Frappe's make_logs(): _server_messages is a JSON list of JSON-encoded message dicts, the
  // dicts written by json.dumps with its default separators.
  std::string inner = "{\"message\": ";
  json::append_string(inner, message);
  inner += ", \"title\": \"Message\", \"indicator\": \"red\", \"raise_exception\": 1}";
  std::string list = "[";
  json::append_string(list, inner);
  list += "]";

  std::string exception = is_frappe_exception(exc_type) ? "frappe.exceptions." : "werkzeug.exceptions.";
  exception.append(exc_type);
  exception += ": ";
  exception.append(message);

  Response r;
  r.status = status;
  json::Writer w(r.body);
  w.begin_object().member("exc_type", exc_type).member("exception", exception).member("_server_messages", list).end_object();
  return r;
}

Response json_response(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace pitstop::http
