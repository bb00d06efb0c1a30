// A workload file (bench/workloads/*.json): what the virtual users ask for, with which keys, and
// which writes they make. Loaded and validated once; read-only while the run goes (shared by the
// threads). The format is described in bench/workloads/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pitstop::load {

// xoshiro256** seeded through splitmix64: fast, good enough for load generation, and the same
// seed gives the same draws on every platform (std:: distributions do not promise that).
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  double uniform();                              // [0, 1)
  std::uint64_t below(std::uint64_t n);          // [0, n), n > 0
  std::uint64_t between(std::uint64_t lo, std::uint64_t hi);  // [lo, hi]

 private:
  std::uint64_t s_[4];
};

// A name pattern with integer conversions, e.g. "CUST-%05d" or "BIN-%05d-%d". Parsed here rather
// than handed to printf so that a hostile pattern cannot read stray arguments.
class Format {
 public:
  // Accepts literal text, %% and %d / %Nd / %0Nd (N < 20); error text on anything else.
  static std::optional<Format> parse(std::string_view text, std::string& error);
  int conversions() const { return conversions_; }
  void append(std::string& out, const std::uint64_t* args) const;
  void append(std::string& out, std::uint64_t a) const { append(out, &a); }

 private:
  struct Piece {
    std::string literal;
    int width = -1;  // >= 0: a conversion
    bool zero = false;
  };
  std::vector<Piece> pieces_;
  int conversions_ = 0;
};

// One named key space, e.g. customers CUST-00001..CUST-00200. Draws return a rank 1..count.
struct KeySpace {
  enum class Kind { numbered, values, dates };
  std::string name;
  Kind kind = Kind::numbered;
  std::uint64_t count = 0;
  Format format;                    // numbered
  std::vector<std::string> values;  // values
  std::int64_t first_day = 0;       // dates: days since 1970-01-01 of rank 1
  bool zipf = false;
  double s = 1.0;
  std::vector<double> cdf;  // zipf: cumulative probability of ranks 1..count

  std::uint64_t draw(Rng& rng) const;
  void append_value(std::string& out, std::uint64_t rank) const;
};

// A path or body with {key} placeholders; the literal parts of a path are stored URL-encoded.
struct Template {
  struct Piece {
    std::string literal;
    int key = -1;  // >= 0: index into Workload::keys
  };
  std::vector<Piece> pieces;
  bool empty() const { return pieces.empty(); }
};

struct RequestSpec {
  std::string name;
  double weight = 1;
  std::string method;
  Template path;
  Template body;  // empty: no body
};

// The write kinds. Each writer (a closed-loop user, or an open-loop connection) writes only
// documents of its own partition of a key space, so no two writers touch the same document and
// the read after a write must show exactly that write.
struct NewOrder {
  double weight = 0;
  int vehicle_key = -1, customer_key = -1, date_key = -1;
  std::string service_type, status;
};
struct StatusUpdate {
  double weight = 0;
  int order_key = -1;
  std::vector<std::string> statuses;  // cycled through
};
struct StockMove {
  double weight = 0;
  int item_key = -1;
  std::uint64_t non_stock_every = 0;  // item numbers that are multiples of this have no bins
  Format bin_format;                  // %d item number, %d warehouse index (1-based)
  std::vector<std::string> warehouses;
  std::uint64_t max_qty = 100000;
};

struct Writes {
  double fraction = 0;   // share of all requests that are POST/PUT writes
  double op_chance = 0;  // derived: chance that one operation is a write (a write brings reads)
  std::optional<NewOrder> new_order;
  std::optional<StatusUpdate> status_update;
  std::optional<StockMove> stock_move;
  bool any() const { return new_order || status_update || stock_move; }
};

struct Workload {
  std::string file, name, description, dataset;
  std::string mode = "closed";  // closed | open
  std::uint64_t users = 10;
  std::uint64_t threads = 1;
  std::uint64_t connections = 0;  // open loop; 0 = as many as users
  double rate = 0;                // open loop arrivals/s
  std::uint64_t think_ms = 0;
  double duration_s = 10;
  double warmup_s = 2;
  std::uint64_t timeout_ms = 5000;
  std::uint64_t seed = 1;
  std::vector<KeySpace> keys;
  std::vector<RequestSpec> requests;
  std::vector<double> request_cdf;  // cumulative weights, last = 1
  Writes writes;

  std::size_t pick_request(Rng& rng) const;  // index into requests
  int key_index(std::string_view name) const;
};

// Reads and validates FILE for DATASET ("small", "bench", ...). On failure returns false with
// `error` naming the file and the JSON path ("seed.json: $.keys.customer.count: ...").
bool load_workload(const std::string& file, const std::string& dataset, Workload& out, std::string& error);

// Appends `v` percent-encoded as a URL component (everything but A-Z a-z 0-9 - . _ ~).
void append_url_component(std::string& out, std::string_view v);

}  // namespace pitstop::load
