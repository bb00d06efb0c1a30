#include "proxy/cache/store.hpp"

#include <openssl/evp.h>

namespace pitstop::cache {

namespace asio = boost::asio;

Store::Store(redis::Client& client, std::string site) : client_(client), prefix_("pitstop:" + std::move(site) + ":") {}

std::string Store::entry_key(std::string_view key) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = prefix_ + "e:";
  for (unsigned i = 0; i < 16; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xF]);
  }
  return out;
}

std::string Store::tag_key(std::string_view tag) const { return prefix_ + "t:" + std::string(tag); }

asio::awaitable<boost::system::result<EntryPtr>> Store::get(const std::string& key) {
  const std::string ek = entry_key(key);
  const std::string_view argv[] = {"GET", ek};
  auto r = co_await client_.command(argv);
  if (!r) co_return r.error();
  if (r->is_nil() || !r->is_string()) co_return EntryPtr{};
  auto e = decode(r->str);
  // A value that does not decode, or that belongs to another key (a hash collision, another
  // program), is a miss: never someone else's answer.
  if (!e || e->key != key) co_return EntryPtr{};
  co_return std::make_shared<const Entry>(std::move(*e));
}

asio::awaitable<boost::system::error_code> Store::put(const Entry& e) {
  const std::string ek = entry_key(e.key);
  const std::int64_t live_ms = std::max<std::int64_t>(1, e.expires_ms() + std::max(e.swr_ms, e.sie_ms) - now_ms());
  const std::string px = std::to_string(live_ms);
  std::vector<redis::Command> cmds;
  cmds.reserve(1 + 3 * e.tags.size());
  cmds.push_back({"SET", ek, encode(e), "PX", px});
  for (const auto& tag : e.tags) {
    const std::string tk = tag_key(tag);
    cmds.push_back({"SADD", tk, ek});
    // The set lives as long as its longest-lived entry (NX for a new set, GT to extend).
    cmds.push_back({"PEXPIRE", tk, px, "NX"});
    cmds.push_back({"PEXPIRE", tk, px, "GT"});
  }
  auto r = co_await client_.pipeline(cmds);
  if (!r) co_return r.error();
  for (const auto& reply : *r)
    if (reply.is_error()) co_return make_error_code(boost::system::errc::io_error);
  co_return boost::system::error_code{};
}

}  // namespace pitstop::cache
