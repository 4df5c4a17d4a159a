// smsp-bench's latency histogram: log-linear buckets in the HdrHistogram way.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace smsp::bench {

/// Latencies in ns, exact below 256 ns, then 128 buckets per power of two:
/// a bucket is at most 1/128 (< 0.8 %) of its lower bound wide, and the
/// middle of a bucket, which quantile() returns, is within 0.4 % of any
/// sample in it. Covers 0 .. 2^63 ns in a fixed 58 KiB, so recording never
/// allocates and histograms merge by adding buckets. Keeping every sample
/// instead would cost hundreds of MB at pipelined rates.
class histogram {
public:
  static constexpr int exact = 256;
  static constexpr int per_octave = 128;
  static constexpr size_t bucket_count = exact + 56 * per_octave;

  histogram() : buckets_(bucket_count, 0) {
  }

  void record(uint64_t ns) {
    ++buckets_[index_of(ns)];
    ++count_;
    max_ = std::max(max_, ns);
  }

  void merge(const histogram& other) {
    for (size_t i = 0; i < bucket_count; ++i)
      buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
  }

  /// Adds `n` samples to bucket `i` (from a sparse copy, see nonzero()).
  void add_bucket(size_t i, uint64_t n, uint64_t max) {
    buckets_[i] += n;
    count_ += n;
    max_ = std::max(max_, max);
  }

  void clear() {
    std::fill(buckets_.begin(), buckets_.end(), 0);
    count_ = 0;
    max_ = 0;
  }

  uint64_t count() const {
    return count_;
  }

  uint64_t max() const {
    return max_;
  }

  /// The non-empty buckets as (index, count): a second's worth of samples
  /// fills few buckets, so per-second copies stay small.
  std::vector<std::pair<uint32_t, uint64_t>> nonzero() const {
    std::vector<std::pair<uint32_t, uint64_t>> out;
    for (size_t i = 0; i < bucket_count; ++i)
      if (buckets_[i] != 0)
        out.emplace_back(static_cast<uint32_t>(i), buckets_[i]);
    return out;
  }

  /// Value at quantile q (0..1) in ns: the middle of its bucket, never above
  /// the largest sample; q = 1 is the largest sample.
  uint64_t quantile(double q) const {
    if (count_ == 0)
      return 0;
    auto rank
      = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    // The largest sample is kept exactly.
    if (rank == count_)
      return max_;
    uint64_t seen = 0;
    for (size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i];
      if (seen >= rank)
        return value_of(i);
    }
    return max_;
  }

  /// The percentile curve: for each non-empty bucket, the share of samples
  /// at or below it (0..1] and its value in ns, ascending.
  std::vector<std::pair<double, uint64_t>> curve() const {
    std::vector<std::pair<double, uint64_t>> out;
    uint64_t seen = 0;
    for (size_t i = 0; i < bucket_count; ++i) {
      if (buckets_[i] == 0)
        continue;
      seen += buckets_[i];
      out.emplace_back(static_cast<double>(seen) / static_cast<double>(count_),
                       value_of(i));
    }
    return out;
  }

  static size_t index_of(uint64_t v) {
    if (v < exact)
      return static_cast<size_t>(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 7;
    return exact + static_cast<size_t>(shift - 1) * per_octave
           + static_cast<size_t>((v >> shift) - per_octave);
  }

  /// Lowest and highest value that fall into bucket `i`.
  static std::pair<uint64_t, uint64_t> bounds_of(size_t i) {
    if (i < exact)
      return {i, i};
    auto shift = (i - exact) / per_octave + 1;
    uint64_t m = (i - exact) % per_octave + per_octave;
    return {m << shift, ((m + 1) << shift) - 1};
  }

private:
  uint64_t value_of(size_t i) const {
    auto [low, high] = bounds_of(i);
    return std::min(low + (high - low) / 2, max_);
  }

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

} // namespace smsp::bench
