// The IMQ's per-poster bookkeeping alone: arrival bounds, settlement, the
// most recent entry within a bound, and the limit's wait for STOREs.
#include <catch2/catch.hpp>

#include "actors/logic/poster_queue.hpp"

using smsp::poster_queue;

TEST_CASE("a STORE takes the most recent post that arrived before it",
          "[poster_queue]") {
  poster_queue q;
  auto p1 = q.post_arrived();
  auto p2 = q.post_arrived();
  auto bound = q.store_arrived();
  auto p3 = q.post_arrived();
  // The post after the STORE commits first: the STORE still waits for its
  // own posts, and then does not take p3.
  q.post_settled(p3, 30);
  CHECK_FALSE(q.posts_settled_through(bound));
  q.post_settled(p1, 10);
  CHECK_FALSE(q.posts_settled_through(bound));
  q.post_settled(p2, 20);
  REQUIRE(q.posts_settled_through(bound));
  auto taken = q.take_latest(bound);
  CHECK(taken.id == 20);
  CHECK(taken.arrival == p2);
  CHECK(q.storing() == 1);
  // The next STORE, after p3, takes p3; one with the old bound takes p1.
  CHECK(q.take_latest(bound).id == 10);
  CHECK(q.take_latest(bound).id == 0);
  CHECK(q.take_latest().id == 30);
  CHECK(q.storing() == 3);
}

TEST_CASE("a failed post is never taken and does not hold STOREs",
          "[poster_queue]") {
  poster_queue q;
  auto p1 = q.post_arrived();
  auto p2 = q.post_arrived();
  auto bound = q.store_arrived();
  q.post_settled(p1, 10);
  q.post_settled(p2, 0);
  REQUIRE(q.posts_settled_through(bound));
  CHECK(q.take_latest(bound).id == 10);
  CHECK(q.posting() == 0);
}

TEST_CASE("a move that fails puts its entry back in its place",
          "[poster_queue]") {
  poster_queue q;
  q.add_committed(5);
  auto p = q.post_arrived();
  q.post_settled(p, 9);
  auto taken = q.take_latest();
  REQUIRE(taken.id == 9);
  CHECK(q.total() == 2);
  q.put_back(taken);
  CHECK(q.storing() == 0);
  // Back as the most recent, with its arrival: a STORE bounded before it
  // still takes the loaded entry.
  CHECK(q.take_latest(0).id == 5);
  CHECK(q.take_latest().id == 9);
  q.moved();
  q.moved();
  CHECK(q.total() == 0);
  CHECK(q.empty());
}

TEST_CASE("entries loaded at start are older than every post",
          "[poster_queue]") {
  poster_queue q;
  q.add_committed(3);
  q.add_committed(4);
  auto bound = q.store_arrived();
  CHECK(q.posts_settled_through(bound));
  CHECK(q.take_latest(bound).id == 4);
}

TEST_CASE("the limit counts posts under way, taken and claimed entries",
          "[poster_queue]") {
  poster_queue q;
  q.add_committed(1);
  auto p = q.post_arrived();
  q.claimed = 1;
  CHECK(q.total() == 3);
  q.post_settled(p, 2);
  CHECK(q.total() == 3);
  q.take_latest();
  CHECK(q.total() == 3);
  q.moved();
  CHECK(q.total() == 2);
  q.claimed = 0;
  CHECK(q.take_all().size() == 1);
  CHECK(q.total() == 0);
}

TEST_CASE("a post at the limit waits for the STOREs that arrived before it",
          "[poster_queue]") {
  poster_queue q;
  q.store_arrived();
  q.store_arrived();
  auto before = q.stores_arrived();
  CHECK(before == 2);
  q.store_arrived();
  CHECK(q.must_wait_for_stores(before));
  q.store_settled();
  CHECK(q.must_wait_for_stores(before));
  CHECK_FALSE(q.empty());
  q.store_settled();
  CHECK_FALSE(q.must_wait_for_stores(before));
  q.store_settled();
  CHECK(q.empty());
}
