// Fixed-bucket histograms, request counters and the exposition writer.
#include "actors/logic/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>

namespace smsp {

// -- histograms ---------------------------------------------------------------

void latency_histogram::observe(std::chrono::nanoseconds d) {
  auto ns = d.count() > 0 ? static_cast<uint64_t>(d.count()) : uint64_t{0};
  // First bound not below ns: the bucket whose upper bound includes it.
  auto i = std::lower_bound(latency_bounds_ns.begin(), latency_bounds_ns.end(),
                            ns)
           - latency_bounds_ns.begin();
  ++buckets[static_cast<size_t>(i)];
  sum_ns += ns;
}

void latency_histogram::merge(const latency_histogram& other) {
  for (size_t i = 0; i < buckets.size(); ++i)
    buckets[i] += other.buckets[i];
  sum_ns += other.sum_ns;
}

uint64_t latency_histogram::count() const {
  return std::accumulate(buckets.begin(), buckets.end(), uint64_t{0});
}

// -- requests -----------------------------------------------------------------

namespace {

constexpr std::array<std::string_view, request_result_count> result_names{
  "ok",
  "not_logged_in",
  "user_exists",
  "bad_username",
  "bad_password",
  "login_failed",
  "no_such_user",
  "nothing_to_store",
  "not_your_mailbox",
  "mailbox_empty",
  "server_busy",
  "mailbox_full",
  "too_many_unstored",
  "storage_failed",
  "mailbox_unavailable",
  "internal_error",
  "bad_request",
};

// The table follows errc: its last value is the last domain error.
static_assert(static_cast<size_t>(errc::mailbox_unavailable) + 1
              == static_cast<size_t>(request_result::internal_error));

constexpr std::array<std::string_view, close_reason_count> close_names{
  "client_closed",
  "idle",
  "no_progress",
  "server_stopping",
};

} // namespace

std::string_view result_name(request_result r) {
  return result_names[static_cast<size_t>(r)];
}

std::string_view command_label(size_t i) {
  return i < command_count ? command_specs[i].name : "unknown";
}

void request_counters::count(size_t cmd, request_result r,
                             std::chrono::nanoseconds took) {
  ++counts[cmd][static_cast<size_t>(r)];
  latency[cmd].observe(took);
}

void request_counters::merge(const request_counters& other) {
  for (size_t c = 0; c < command_label_count; ++c) {
    for (size_t r = 0; r < request_result_count; ++r)
      counts[c][r] += other.counts[c][r];
    latency[c].merge(other.latency[c]);
  }
}

uint64_t request_counters::total() const {
  uint64_t n = 0;
  for (auto& row : counts)
    n = std::accumulate(row.begin(), row.end(), n);
  return n;
}

std::string_view close_reason_name(close_reason r) {
  return close_names[static_cast<size_t>(r)];
}

// -- the exposition format ----------------------------------------------------

std::string escape_label_value(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value))
    return "NaN";
  if (std::isinf(value))
    return value > 0 ? "+Inf" : "-Inf";
  // Plain decimals read best (le="0.0001", not "1e-04"); very large or
  // small values are shorter in exponent form.
  char buf[400];
  auto fixed = std::to_chars(buf, buf + sizeof(buf), value,
                             std::chars_format::fixed);
  if (fixed.ec == std::errc{} && fixed.ptr - buf <= 24)
    return std::string(buf, fixed.ptr);
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, ec == std::errc{} ? end : buf);
}

void exposition_writer::family(std::string_view name, std::string_view type,
                               std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  for (char c : help) {
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void exposition_writer::labels(std::initializer_list<metric_label> labels,
                               const metric_label* extra) {
  if (labels.size() == 0 && extra == nullptr)
    return;
  out_ += '{';
  bool first = true;
  auto one = [&](const metric_label& l) {
    if (!first)
      out_ += ',';
    first = false;
    out_ += l.first;
    out_ += "=\"";
    out_ += escape_label_value(l.second);
    out_ += '"';
  };
  for (auto& l : labels)
    one(l);
  if (extra != nullptr)
    one(*extra);
  out_ += '}';
}

void exposition_writer::sample_text(std::string_view name,
                                    std::initializer_list<metric_label> labels,
                                    std::string_view value) {
  out_ += name;
  this->labels(labels, nullptr);
  out_ += ' ';
  out_ += value;
  out_ += '\n';
}

void exposition_writer::sample(std::string_view name,
                               std::initializer_list<metric_label> labels,
                               double value) {
  sample_text(name, labels, format_value(value));
}

void exposition_writer::sample(std::string_view name,
                               std::initializer_list<metric_label> labels,
                               uint64_t value) {
  sample_text(name, labels, std::to_string(value));
}

void exposition_writer::histogram(std::string_view name,
                                  std::initializer_list<metric_label> labels,
                                  const latency_histogram& h) {
  std::string bucket{name};
  bucket += "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    auto le = i < latency_bounds_ns.size()
                ? format_value(static_cast<double>(latency_bounds_ns[i]) / 1e9)
                : std::string{"+Inf"};
    metric_label extra{"le", le};
    out_ += bucket;
    this->labels(labels, &extra);
    out_ += ' ';
    out_ += std::to_string(cumulative);
    out_ += '\n';
  }
  std::string sum{name};
  sum += "_sum";
  sample(sum, labels, static_cast<double>(h.sum_ns) / 1e9);
  std::string count{name};
  count += "_count";
  sample(count, labels, cumulative);
}

void exposition_writer::comment(std::string_view text) {
  out_ += "# ";
  for (char c : text)
    out_ += c == '\n' ? ' ' : c;
  out_ += '\n';
}

} // namespace smsp
