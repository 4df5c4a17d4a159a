// Metrics in plain C++: fixed-bucket histograms, per-command request
// counters and the Prometheus text exposition writer (format 0.0.4).
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "actors/errc.hpp"
#include "net/wire/codec.hpp"

namespace smsp {

// -- histograms ---------------------------------------------------------------

/// Upper bounds of the latency buckets, in nanoseconds: 100 µs to 10 s. Every
/// latency histogram uses these, so histograms merge by adding counts.
inline constexpr std::array<uint64_t, 16> latency_bounds_ns{
  100'000,       250'000,       500'000,       1'000'000,
  2'500'000,     5'000'000,     10'000'000,    25'000'000,
  50'000'000,    100'000'000,   250'000'000,   500'000'000,
  1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};

/// A latency histogram over latency_bounds_ns. Observing is O(log buckets)
/// and never allocates.
struct latency_histogram {
  /// Observations per bucket, not cumulative: buckets[i] counts those above
  /// bound i - 1 and at most bound i; the last one those above 10 s.
  std::array<uint64_t, latency_bounds_ns.size() + 1> buckets{};
  /// Sum of all observations, in nanoseconds (wraps after 584 years).
  uint64_t sum_ns = 0;

  /// Records one duration; a negative one counts as 0.
  void observe(std::chrono::nanoseconds d);

  /// Adds `other`'s observations to these.
  void merge(const latency_histogram& other);

  /// Number of observations.
  uint64_t count() const;

  bool empty() const {
    return count() == 0;
  }
};

// -- requests -----------------------------------------------------------------

/// What a request came to: ok, a domain error (errc), an internal error
/// (`KO internal error`: a deadline, a crashed actor) or a request that did
/// not parse. Indexes request_counters' rows.
enum class request_result : uint8_t {
  ok = 0,
  // 1 to 14 are the errc values, in errc's order.
  internal_error = 15,
  bad_request = 16,
};

inline constexpr size_t request_result_count = 17;

/// The result of a request answered with `code`.
constexpr request_result result_of(errc code) {
  return static_cast<request_result>(static_cast<uint8_t>(code));
}

/// The result's label value: "ok", "not_logged_in", ..., "internal_error",
/// "bad_request".
std::string_view result_name(request_result r);

/// Label values of the command dimension: each command by its wire name
/// (REGISTER, LOGIN, ...), then "unknown" for a request whose command could
/// not be told (empty, too long, unknown word).
inline constexpr size_t command_label_count = command_count + 1;

/// The index of the "unknown" command label.
inline constexpr size_t unknown_command = command_count;

/// The command label of index `i` (< command_label_count).
std::string_view command_label(size_t i);

/// Requests by command and result, and their latency by command: what a
/// connection counts between two reports, and what the metrics actor sums.
/// Fixed size (no allocation), so counting is O(1) apart from the bucket
/// search.
struct request_counters {
  /// counts[command label][result].
  std::array<std::array<uint64_t, request_result_count>, command_label_count>
    counts{};
  /// latency[command label], from reading the request to having its reply.
  std::array<latency_histogram, command_label_count> latency{};

  /// Records one request of command label `cmd` (< command_label_count).
  void count(size_t cmd, request_result r, std::chrono::nanoseconds took);

  void merge(const request_counters& other);

  /// Requests counted.
  uint64_t total() const;

  bool empty() const {
    return total() == 0;
  }
};

// -- connections --------------------------------------------------------------

/// Why a connection closed (see net/connection.cpp).
enum class close_reason : uint8_t {
  /// The client closed it, or the socket failed.
  client_closed = 0,
  /// No complete request for --idle-timeout.
  idle,
  /// Replies unread by the client for --idle-timeout.
  no_progress,
  /// The server stopped.
  server_stopping,
};

inline constexpr size_t close_reason_count = 4;

/// The reason's label value: "client_closed", "idle", ...
std::string_view close_reason_name(close_reason r);

// -- the exposition format ----------------------------------------------------

/// `text` as a label value inside double quotes: backslash, double quote and
/// line feed escaped (\\, \", \n), as the text format 0.0.4 requires.
std::string escape_label_value(std::string_view text);

/// One label: name and (unescaped) value.
using metric_label = std::pair<std::string_view, std::string_view>;

/// Writes the Prometheus text format, version 0.0.4, into a string. Each
/// family is declared once with family(), then its samples follow. Names
/// are the caller's constants (never user data); label values are escaped.
class exposition_writer {
public:
  /// Starts a family: `# HELP` (backslash and line feed escaped) and
  /// `# TYPE` (counter, gauge, histogram).
  void family(std::string_view name, std::string_view type,
              std::string_view help);

  /// A family of one unlabelled sample: family() then sample(), so that
  /// the name is written once.
  template <class Value>
  void single(std::string_view name, std::string_view type,
              std::string_view help, Value value) {
    family(name, type, help);
    sample(name, {}, value);
  }

  /// One sample: `name{labels} value`.
  void sample(std::string_view name, std::initializer_list<metric_label> labels,
              double value);
  void sample(std::string_view name, std::initializer_list<metric_label> labels,
              uint64_t value);

  /// A histogram's samples: name_bucket{labels, le} cumulatively, with le in
  /// seconds up to +Inf, then name_sum (seconds) and name_count.
  void histogram(std::string_view name,
                 std::initializer_list<metric_label> labels,
                 const latency_histogram& h);

  /// A `# ` comment line (a line feed in it is replaced by a space).
  void comment(std::string_view text);

  const std::string& text() const {
    return out_;
  }

private:
  void labels(std::initializer_list<metric_label> labels,
              const metric_label* extra);

  /// `name{labels} value` with the value already formatted.
  void sample_text(std::string_view name,
                   std::initializer_list<metric_label> labels,
                   std::string_view value);

  std::string out_;
};

/// `value` as the text format writes a float: shortest round-trip decimal,
/// "+Inf", "-Inf" or "NaN".
std::string format_value(double value);

} // namespace smsp
