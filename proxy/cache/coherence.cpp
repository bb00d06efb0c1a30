#include "proxy/cache/coherence.hpp"

#include <algorithm>

#include "proxy/cache/cache.hpp"

namespace pitstop::cache {

InvalidationLog::Epoch InvalidationLog::record(std::span<const std::string> tags) {
  std::vector<std::uint64_t> hashes;
  hashes.reserve(tags.size());
  for (const auto& t : tags) hashes.push_back(tag_hash(t));
  return record_hashes(hashes);
}

InvalidationLog::Epoch InvalidationLog::record_hashes(std::span<const std::uint64_t> tag_hashes) {
  std::lock_guard lock(m_);
  const Epoch e = epoch_.load(std::memory_order_relaxed) + 1;
  for (std::uint64_t h : tag_hashes) last_[h] = e;
  // Published after the records: a reader that sees the new epoch finds them.
  epoch_.store(e, std::memory_order_release);
  if (last_.size() > capacity_) prune();
  return e;
}

// Drops the older half of the records; questions about epochs before them are answered yes from
// then on, so a very long fill is refused rather than trusted.
void InvalidationLog::prune() {
  std::vector<Epoch> epochs;
  epochs.reserve(last_.size());
  for (const auto& kv : last_) epochs.push_back(kv.second);
  auto mid = epochs.begin() + static_cast<std::ptrdiff_t>(epochs.size() / 2);
  std::nth_element(epochs.begin(), mid, epochs.end());
  const Epoch cut = *mid;
  std::erase_if(last_, [&](const auto& kv) { return kv.second <= cut; });
  floor_ = std::max(floor_, cut);
}

bool InvalidationLog::invalidated_since(std::span<const std::uint64_t> tag_hashes, Epoch since) const {
  // Nothing recorded since: the common case, without the lock.
  if (epoch_.load(std::memory_order_acquire) <= since) return false;
  std::lock_guard lock(m_);
  if (since < floor_) return true;
  for (std::uint64_t h : tag_hashes)
    if (auto it = last_.find(h); it != last_.end() && it->second > since) return true;
  return false;
}

bool InvalidationLog::invalidated_since(std::span<const std::string> tags, Epoch since) const {
  if (epoch_.load(std::memory_order_acquire) <= since) return false;
  std::vector<std::uint64_t> hashes;
  hashes.reserve(tags.size());
  for (const auto& t : tags) hashes.push_back(tag_hash(t));
  return invalidated_since(hashes, since);
}

void Trust::l2_failed() {
  std::int64_t expected = 0;
  const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
  l2_suspect_since_.compare_exchange_strong(expected, now);
}

void Trust::relay_caught_up(std::chrono::steady_clock::time_point started) {
  auto suspect = l2_suspect_since_.load();
  if (suspect != 0 && suspect < started.time_since_epoch().count()) l2_suspect_since_.compare_exchange_strong(suspect, 0);
}

}  // namespace pitstop::cache
