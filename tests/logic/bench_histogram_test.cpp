// Catch2 tests of smsp-bench's latency histogram (app/bench_histogram.hpp).
#include <catch2/catch.hpp>

#include "app/bench_histogram.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

using smsp::bench::histogram;

namespace {

// The bucket of any value is narrower than 1/128 of its lower bound, and the
// reported value is the middle of the bucket (or the largest sample).
constexpr double relative_error = 1.0 / 128;

bool near(uint64_t got, uint64_t want) {
  auto diff = std::abs(static_cast<double>(got) - static_cast<double>(want));
  return diff <= relative_error * static_cast<double>(want) + 1;
}

} // namespace

TEST_CASE("every value falls into a bucket whose bounds hold it") {
  for (uint64_t v : {0ull, 1ull, 255ull, 256ull, 257ull, 1000ull, 65535ull,
                     1000000ull, 60000000000ull, (1ull << 63) + 12345}) {
    auto i = histogram::index_of(v);
    REQUIRE(i < histogram::bucket_count);
    auto [low, high] = histogram::bounds_of(i);
    CHECK(low <= v);
    CHECK(v <= high);
    CHECK(static_cast<double>(high - low)
          <= relative_error * static_cast<double>(low) + 1);
  }
}

TEST_CASE("percentiles of a uniform 1..100000 distribution") {
  histogram h;
  // 1 us .. 100 ms in ns, each value once.
  for (uint64_t v = 1; v <= 100000; ++v)
    h.record(v * 1000);
  REQUIRE(h.count() == 100000);
  CHECK(near(h.quantile(0.5), 50000 * 1000));
  CHECK(near(h.quantile(0.9), 90000 * 1000));
  CHECK(near(h.quantile(0.99), 99000 * 1000));
  CHECK(near(h.quantile(0.999), 99900 * 1000));
  CHECK(h.quantile(1.0) == 100000 * 1000);
  CHECK(h.max() == 100000 * 1000);
}

TEST_CASE("percentiles of an exponential distribution against the sorted "
          "samples") {
  std::mt19937_64 rng{42};
  std::exponential_distribution<double> dist{1.0 / 200000}; // mean 200 us
  std::vector<uint64_t> samples;
  histogram h;
  for (int i = 0; i < 200000; ++i) {
    auto v = static_cast<uint64_t>(dist(rng)) + 1000;
    samples.push_back(v);
    h.record(v);
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    auto rank = static_cast<size_t>(std::ceil(q * samples.size())) - 1;
    INFO("quantile " << q);
    CHECK(near(h.quantile(q), samples[rank]));
  }
  CHECK(h.max() == samples.back());
}

TEST_CASE("merged histograms equal one fed all the samples") {
  histogram a;
  histogram b;
  histogram all;
  for (uint64_t v = 1; v < 5000; ++v) {
    (v % 3 == 0 ? a : b).record(v * 37);
    all.record(v * 37);
  }
  histogram merged;
  merged.merge(a);
  merged.merge(b);
  CHECK(merged.count() == all.count());
  CHECK(merged.max() == all.max());
  for (double q : {0.1, 0.5, 0.9, 0.99, 0.999})
    CHECK(merged.quantile(q) == all.quantile(q));
  // The sparse copy a worker publishes each second rebuilds it too.
  histogram rebuilt;
  for (auto [i, n] : all.nonzero())
    rebuilt.add_bucket(i, n, all.max());
  CHECK(rebuilt.quantile(0.99) == all.quantile(0.99));
  CHECK(rebuilt.count() == all.count());
}

TEST_CASE("the percentile curve rises to 1 and its values are ordered") {
  histogram h;
  for (uint64_t v = 1; v <= 1000; ++v)
    h.record(v * v);
  auto curve = h.curve();
  REQUIRE(!curve.empty());
  CHECK(curve.back().first == 1.0);
  for (size_t i = 1; i < curve.size(); ++i) {
    CHECK(curve[i - 1].first < curve[i].first);
    CHECK(curve[i - 1].second <= curve[i].second);
  }
  h.clear();
  CHECK(h.count() == 0);
  CHECK(h.quantile(0.5) == 0);
}
