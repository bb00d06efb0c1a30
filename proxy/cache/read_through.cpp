#include "proxy/cache/read_through.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "proxy/log/log.hpp"

namespace pitstop::cache {

namespace asio = boost::asio;

std::string_view name(Served s) {
  switch (s) {
    case Served::l1_hit: return "l1_hit";
    case Served::redis_hit: return "redis_hit";
    case Served::stale_while_revalidate: return "stale_while_revalidate";
    case Served::collapsed: return "collapsed";
    case Served::stored: return "stored";
    case Served::fetched: return "fetched";
    case Served::stale_if_error: return "stale_if_error";
    case Served::origin_error: return "origin_error";
    case Served::timeout: return "timeout";
    case Served::refused: return "refused";
    case Served::bypass: return "bypass";
    case Served::write: return "write";
  }
  return "unknown";
}

std::string cache_status(const Answer& a) {
  std::string s = "pitstop; ";
  const std::string fwd = a.had_stale ? "fwd=stale" : "fwd=uri-miss";
  auto ttl = [&] { return "ttl=" + std::to_string(a.ttl_s); };
  auto fwd_status = [&] { return a.fwd_status ? "; fwd-status=" + std::to_string(a.fwd_status) : std::string(); };
  auto down = [&] { return a.redis_down ? std::string("; detail=redis-down") : std::string(); };
  switch (a.served) {
    case Served::l1_hit: return s + "hit; " + ttl() + "; detail=l1";
    case Served::redis_hit: return s + "hit; " + ttl() + "; detail=redis";
    case Served::stale_while_revalidate: return s + "hit; " + ttl() + "; detail=stale-while-revalidate";
    case Served::collapsed: return s + fwd + "; collapsed" + down();
    case Served::stored: return s + fwd + "; stored" + down();
    case Served::fetched: return s + fwd + down();
    case Served::stale_if_error: return s + "fwd=stale" + fwd_status() + "; " + ttl() + "; detail=stale-if-error";
    case Served::origin_error: return s + fwd + fwd_status();
    case Served::timeout: return s + fwd + "; detail=timeout";
    case Served::refused: return s + "detail=refused";
    case Served::bypass: return s + "fwd=bypass; detail=cache-off";
    case Served::write: return s + "fwd=method";
  }
  return s;
}

namespace {
class SystemClock final : public Clock {
 public:
  std::int64_t wall_ms() const override { return now_ms(); }
};
}  // namespace

const Clock& system_clock() {
  static const SystemClock clock;
  return clock;
}

ReadThrough::ReadThrough(asio::any_io_executor ex, L1& l1, Remote& l2, Flights& flights, InvalidationLog& log, Trust& trust,
                         const Clock& clock, ReadSettings settings)
    : ex_(std::move(ex)), l1_(l1), l2_(l2), flights_(flights), log_(log), trust_(trust), clock_(clock), settings_(settings) {}

Answer ReadThrough::hit(EntryPtr e, Served how, std::int64_t now) const {
  Answer a;
  a.ttl_s = e->ttl_left_s(now);
  a.entry = std::move(e);
  a.served = how;
  return a;
}

asio::awaitable<Answer> ReadThrough::serve(Read read) {
  if (!settings_.enabled) {
    // The no-cache baseline: every read is an origin query, nothing is kept or shared.
    auto outcome = co_await fetch(read, 0, false);
    Answer a;
    a.entry = outcome->entry;
    a.served = Served::bypass;
    co_return a;
  }
  const Began arrived = began(log_, trust_);
  const std::int64_t now = clock_.wall_ms();
  Looked looked = co_await look_up(read.key, now, arrived);
  const EntryPtr& e = looked.entry;
  if (e && e->fresh(now)) co_return hit(e, looked.source, now);
  if (e && now < e->expires_ms() + e->swr_ms) {
    // Stale while revalidate: this answer now, one refresh in the background.
    auto ticket = flights_.join(read.key);
    if (ticket.leader) asio::co_spawn(ex_, refresh(read, looked.redis_ms, ticket.flight), asio::detached);
    co_return hit(e, Served::stale_while_revalidate, now);
  }
  co_return co_await miss(std::move(read), std::move(looked), arrived);
}

asio::awaitable<ReadThrough::Looked> ReadThrough::look_up(const std::string& key, std::int64_t now, const Began& asked) {
  Looked out;
  if (asked.proven) out.entry = l1_.get(key, now);
  out.redis_down = !trust_.l2_trusted();
  if (out.entry || out.redis_down) co_return out;
  auto r = co_await l2_.get(key);
  if (!r) {
    out.redis_down = true;
    trust_.l2_failed();
    co_return out;
  }
  out.redis_ms = r->redis_ms;
  if (!r->entry || r->entry->dead(now)) co_return out;
  out.entry = r->entry;
  out.source = Served::redis_hit;
  const EntryPtr& e = out.entry;
  l1_.put_if(e, [&] { return may_keep(asked, *e); });
  co_return out;
}

bool ReadThrough::may_keep(const Began& b, const Entry& e) const {
  // Not if this instance may have missed an invalidation since (trust lapsed, a new generation),
  // nor if one of the answer's tags was invalidated while it was being read.
  return b.proven && trust_.generation() == b.generation && trust_.l1_usable() && !log_.invalidated_since(e.tag_hashes, b.epoch);
}

bool ReadThrough::may_take(const Outcome& o, const Began& arrived) const {
  // The origin was read after this request arrived: nothing it could know of is missing.
  if (o.began.at >= arrived.at) return true;
  // Otherwise only if every invalidation between the two reached this instance and none of them
  // touched the answer. An error answer has no tags: only if nothing at all was invalidated.
  if (!arrived.proven || !o.began.proven || o.began.generation != arrived.generation) return false;
  if (o.began.epoch >= arrived.epoch) return true;
  return o.entry->status == 200 && !log_.invalidated_since(o.entry->tag_hashes, o.began.epoch);
}

asio::awaitable<EntryPtr> ReadThrough::late_hit(const std::string& key, Served& source) {
  source = Served::l1_hit;
  EntryPtr late = trust_.l1_usable() ? l1_.get(key, clock_.wall_ms()) : nullptr;
  if (!late && !l1_.enabled() && trust_.l2_trusted()) {
    auto r = co_await l2_.get(key);
    if (r && r->entry) late = r->entry;
    source = Served::redis_hit;
  }
  if (late && late->fresh(clock_.wall_ms())) co_return late;
  co_return nullptr;
}

asio::awaitable<Answer> ReadThrough::miss(Read read, Looked looked, Began arrived) {
  const auto deadline = std::chrono::steady_clock::now() + settings_.follower_wait;
  while (true) {
    auto ticket = flights_.join(read.key);
    if (ticket.leader) {
      // A fetch may have finished while this request was looking in Redis: its answer is in L1
      // (or Redis, without L1) by now, and fetching again would be a second origin query.
      Served source;
      const Began lookup = began(log_, trust_);
      if (EntryPtr late = co_await late_hit(read.key, source)) {
        auto o = std::make_shared<Outcome>();
        o->entry = late;
        o->began = lookup;
        flights_.finish(read.key, ticket.flight, o);
        co_return hit(late, source, clock_.wall_ms());
      }
      auto outcome = co_await fetch(read, looked.redis_ms, true);
      flights_.finish(read.key, ticket.flight, outcome);
      co_return settle(*outcome, looked, true);
    }
    auto outcome = co_await flights_.wait(ticket.flight, deadline);
    if (!outcome) {
      const EntryPtr& e = looked.entry;
      const std::int64_t now = clock_.wall_ms();
      if (e && now < e->expires_ms() + e->sie_ms) co_return hit(e, Served::stale_if_error, now);
      Answer a;
      a.served = Served::timeout;
      a.had_stale = e != nullptr;
      co_return a;
    }
    if (may_take(*outcome, arrived)) co_return settle(*outcome, looked, false);
    // That fetch began before an invalidation this request could have seen: fetch again, together
    // with the others in the same position. The next fetch begins after this request arrived, so
    // it is taken.
  }
}

Answer ReadThrough::settle(const Outcome& outcome, const Looked& looked, bool leader) const {
  const EntryPtr& e = looked.entry;
  const EntryPtr& got = outcome.entry;
  Answer a;
  a.had_stale = e != nullptr;
  if (got->status != 200) {
    const std::int64_t now = clock_.wall_ms();
    a.fwd_status = got->status;
    if (outcome.transient && e && now < e->expires_ms() + e->sie_ms) {
      a.entry = e;
      a.served = Served::stale_if_error;
      a.ttl_s = e->ttl_left_s(now);
      return a;
    }
    a.entry = got;
    a.served = Served::origin_error;
    return a;
  }
  a.entry = got;
  a.served = !leader ? Served::collapsed : outcome.stored ? Served::stored : Served::fetched;
  a.redis_down = outcome.redis_down || looked.redis_down;
  return a;
}

asio::awaitable<void> ReadThrough::refresh(Read read, std::int64_t redis_ms, std::shared_ptr<Flights::Flight> flight) {
  auto outcome = co_await fetch(read, redis_ms, true);
  flights_.finish(read.key, flight, outcome);
}

asio::awaitable<OutcomePtr> ReadThrough::fetch(const Read& read, std::int64_t redis_ms, bool keep) {
  auto out = std::make_shared<Outcome>();
  // Anything invalidated from now on may be newer than what the origin is about to say.
  out->began = began(log_, trust_);
  const Began& since = out->began;
  Fetched got = co_await read.source->fetch();
  auto e = std::make_shared<Entry>();
  e->status = got.status;
  e->content_type = std::move(got.content_type);
  e->headers = std::move(got.headers);
  if (got.status != 200) {
    e->body = std::move(got.body);
    out->entry = std::move(e);
    out->transient = got.transient;
    co_return out;
  }
  e->key = read.key;
  e->etag = strong_etag(got.body);
  e->stored_ms = clock_.wall_ms();
  e->ttl_ms = read.life.ttl_ms;
  e->swr_ms = read.life.swr_ms;
  e->sie_ms = read.life.sie_ms;
  e->tags = std::move(got.tags);
  hash_tags(*e);
  e->body = std::move(got.body);
  // Built by appending, the body has up to twice its size in capacity: L1 holds what it counts.
  e->body.shrink_to_fit();
  out->entry = e;
  if (!keep || got.variant || got.no_store) co_return out;
  // An answer tagged beyond reason could not be invalidated reliably: serve it, don't keep it.
  if (e->tags.size() > settings_.max_tags) {
    log::warn("cache key ", read.key.substr(0, 200), ": ", e->tags.size(), " tags on one answer; not cached");
    co_return out;
  }
  // A write that landed while this answer was read makes it possibly stale: answer, don't keep.
  if (log_.invalidated_since(e->tag_hashes, since.epoch)) co_return out;
  // Redis first: it refuses the answer if one of its tags was invalidated after the lookup
  // (redis_ms, Redis's clock), which covers writes on other instances too.
  if (redis_ms != 0 && trust_.l2_trusted()) {
    auto stored = co_await l2_.put(*e, redis_ms);
    if (!stored) {
      out->redis_down = true;
      trust_.l2_failed();
    } else if (!*stored) {
      co_return out;
    }
  } else {
    out->redis_down = true;
  }
  // Redis has the tag strings now; L1 indexes by hash (a schedule's 1,500 tags: ~100 kB less).
  std::vector<std::string>().swap(e->tags);
  l1_.put_if(e, [&] { return may_keep(since, *e); });
  out->stored = true;
  co_return out;
}

}  // namespace pitstop::cache
