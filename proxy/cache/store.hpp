#pragma once
// L2: entries in the Redis "cache" instance. An entry lives under e:<hash of its key> and is
// listed in one set per tag (t:<tag>) so that a tag can be invalidated later. Keys carry the
// site prefix, so several sites can share one Redis.
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/cache/cache.hpp"
#include "proxy/redis/client.hpp"

namespace pitstop::cache {

class Store {
 public:
  Store(redis::Client& client, std::string site);

  // nullptr on a miss; an error when Redis cannot be asked.
  boost::asio::awaitable<boost::system::result<EntryPtr>> get(const std::string& key);
  boost::asio::awaitable<boost::system::error_code> put(const Entry& e);

  std::string entry_key(std::string_view key) const;
  std::string tag_key(std::string_view tag) const;
  redis::Client& client() { return client_; }

 private:
  redis::Client& client_;
  std::string prefix_;
};

}  // namespace pitstop::cache
