// The server-wide budget of unsent reply bytes alone: grants, waiting in
// arrival order, release and forget.
#include <catch2/catch.hpp>

#include <vector>

#include "net/output_budget.hpp"

namespace {

using budget = smsp::output_budget<int>;

std::vector<int> holders_of(const std::vector<budget::grant>& grants) {
  std::vector<int> out;
  for (auto& g : grants)
    out.push_back(g.holder);
  return out;
}

} // namespace

TEST_CASE("requests that fit are granted at once and counted per holder",
          "[output_budget]") {
  budget b{100};
  CHECK(b.request(1, 40));
  CHECK(b.request(2, 60));
  CHECK(b.in_use() == 100);
  CHECK(b.held_by(1) == 40);
  CHECK(b.held_by(2) == 60);
  CHECK(b.waiting() == 0);
  CHECK(b.request(1, 0));
}

TEST_CASE("a request that does not fit waits and is served first come, "
          "first served as bytes come back",
          "[output_budget]") {
  budget b{100};
  REQUIRE(b.request(1, 100));
  CHECK_FALSE(b.request(2, 50));
  CHECK_FALSE(b.request(3, 10));
  CHECK(b.waiting() == 2);
  // 10 bytes back would fit holder 3, but 2 is first: nobody is served.
  CHECK(b.release(1, 10).empty());
  CHECK(b.in_use() == 90);
  // Now 60 are free: 2 gets 50, then 3 gets 10.
  auto served = b.release(1, 50);
  CHECK(holders_of(served) == std::vector<int>{2, 3});
  CHECK(b.held_by(2) == 50);
  CHECK(b.held_by(3) == 10);
  CHECK(b.in_use() == 100);
  CHECK(b.waiting() == 0);
}

TEST_CASE("while anyone waits, new requests wait behind them",
          "[output_budget]") {
  budget b{100};
  REQUIRE(b.request(1, 90));
  CHECK_FALSE(b.request(2, 20));
  // 5 would fit, but 2 waits already: no overtaking.
  CHECK_FALSE(b.request(3, 5));
  CHECK(holders_of(b.release(1, 90)) == std::vector<int>{2, 3});
}

TEST_CASE("a holder's second request adds to its waiting one",
          "[output_budget]") {
  budget b{100};
  REQUIRE(b.request(1, 100));
  CHECK_FALSE(b.request(2, 30));
  CHECK_FALSE(b.request(2, 30));
  CHECK(b.waiting() == 1);
  auto served = b.release(1, 60);
  REQUIRE(served.size() == 1);
  CHECK(served[0].bytes == 60);
  CHECK(b.held_by(2) == 60);
}

TEST_CASE("a request larger than the whole budget is cut to it",
          "[output_budget]") {
  budget b{100};
  CHECK(b.request(1, 1000));
  CHECK(b.held_by(1) == 100);
}

TEST_CASE("releasing more than held gives back only what is held",
          "[output_budget]") {
  budget b{100};
  REQUIRE(b.request(1, 30));
  b.release(1, 50);
  CHECK(b.held_by(1) == 0);
  CHECK(b.in_use() == 0);
  b.release(7, 10);
  CHECK(b.in_use() == 0);
}

TEST_CASE("forget frees a gone holder's bytes and drops its waiting request",
          "[output_budget]") {
  budget b{100};
  REQUIRE(b.request(1, 100));
  CHECK_FALSE(b.request(2, 40));
  CHECK_FALSE(b.request(3, 40));
  // 2 goes away while waiting: it is never served.
  CHECK(b.forget(2).empty());
  CHECK(b.waiting() == 1);
  // 1 goes away: 3 is served from what it held.
  CHECK(holders_of(b.forget(1)) == std::vector<int>{3});
  CHECK(b.in_use() == 40);
  CHECK(b.holders() == std::vector<int>{3});
}
