#pragma once
// Parsers for the address forms the config accepts. Each returns false with a reason in `why`.
#include <string>
#include <string_view>

#include "proxy/config/config.hpp"

namespace pitstop::config {

// redis://[[username]:password@]host[:port][/db]   (password percent-decoded)
bool parse_redis_url(std::string_view url, Redis& out, std::string& why);
// mariadb://user[:password]@host[:port]/database   (also mysql://; parts percent-decoded)
bool parse_mariadb_url(std::string_view url, MariaDb& out, std::string& why);
// http://host[:port][/] (an upstream's base URL: no path, no credentials, no https)
bool parse_http_url(std::string_view url, HostPort& out, std::string& why);
// host:port, [v6]:port
bool parse_host_port(std::string_view text, HostPort& out, std::string& why);

}  // namespace pitstop::config
