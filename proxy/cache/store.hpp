#pragma once
// L2: entries in the Redis "cache" instance. An entry lives under e:<hash of its key> and is
// listed in one set per tag (t:<tag>). Invalidating a tag deletes its entries and leaves a
// marker (i:<tag>, Redis's clock) so that a fill that read the origin before the invalidation
// cannot store its answer after it. Keys carry the site, so sites can share one Redis.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include "proxy/cache/cache.hpp"
#include "proxy/cache/read_through.hpp"
#include "proxy/redis/client.hpp"

namespace pitstop::cache {

class Store final : public Remote {
 public:
  Store(redis::Client& client, std::string site);

  boost::asio::awaitable<boost::system::result<Lookup>> get(const std::string& key) override;

  // Stores the entry unless one of its tags was invalidated at or after `since_ms` (Redis's
  // clock): then the answer may predate a write, and false is returned.
  boost::asio::awaitable<boost::system::result<bool>> put(const Entry& e, std::int64_t since_ms) override;

  // Deletes every entry of each tag (one script, atomic) and marks the tags invalidated.
  // Returns how many entries went.
  boost::asio::awaitable<boost::system::result<std::int64_t>> invalidate(std::span<const std::string> tags) override;

  std::string entry_key(std::string_view key) const;
  std::string tag_key(std::string_view tag) const;
  std::string marker_key(std::string_view tag) const;
  redis::Client& client() { return client_; }

  // How long invalidation markers live: longer than any fill can take.
  static constexpr std::int64_t kMarkerMs = 10 * 60 * 1000;

 private:
  redis::Client& client_;
  std::string prefix_;
};

}  // namespace pitstop::cache
