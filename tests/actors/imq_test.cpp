// IMQ actor tests: POST and STORE on the incoming message queue.
#include "tests/actors/fixture.hpp"

#include <string>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("IMQ STORE takes the most recent message of its own poster only",
          "[actors]") {
  fixture f;
  REQUIRE(outcome(f.imq_post("A", "A1")) == "OK");
  REQUIRE(outcome(f.imq_post("B", "B1")) == "OK");
  REQUIRE(outcome(f.imq_post("A", "A2")) == "OK");
  REQUIRE(outcome(f.imq_post("B", "B2")) == "OK");
  CHECK(f.imq_count() == 4u);

  REQUIRE(outcome(f.imq_store("A", "target1")) == "OK");
  CHECK(f.stored_mailbox("target1") == std::vector<std::string>{"A2"});
  REQUIRE(outcome(f.imq_store("A", "target1")) == "OK");
  // Mail ids follow the order of the moves, so a mailbox's FIFO is by id.
  CHECK(f.stored_mailbox("target1") == std::vector<std::string>{"A2", "A1"});
  CHECK(outcome(f.imq_store("A", "target1")) == ko(errc::nothing_to_store));
  CHECK(f.imq_count() == 2u);

  // B's messages were waiting all along.
  REQUIRE(outcome(f.imq_store("B", "target2")) == "OK");
  REQUIRE(outcome(f.imq_store("B", "target2")) == "OK");
  CHECK(f.stored_mailbox("target2") == std::vector<std::string>{"B2", "B1"});
  CHECK(outcome(f.imq_store("B", "target2")) == ko(errc::nothing_to_store));
  CHECK(f.imq_count() == 0u);
  CHECK(f.stored_imq().empty());
  // A mailbox actor of the target loads what the IMQ moved.
  auto mb = f.spawn_mailbox("target2");
  CHECK(must(f.mailbox_count(mb)) == 2u);
  CHECK(must(f.mailbox_get(mb)) == "B2");
}

TEST_CASE("IMQ STORE with nothing posted fails with nothing_to_store",
          "[actors]") {
  fixture f;
  CHECK(outcome(f.imq_store("A", "target")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.imq_post("B", "B1")) == "OK");
  CHECK(outcome(f.imq_store("A", "target")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.imq_store("", "target")) == ko(errc::nothing_to_store));
  CHECK(f.stored_mailbox("target").empty());
  // Posting after a failed STORE works as usual.
  REQUIRE(outcome(f.imq_post("A", "A1")) == "OK");
  REQUIRE(outcome(f.imq_store("A", "target")) == "OK");
  CHECK(f.stored_mailbox("target") == std::vector<std::string>{"A1"});
  CHECK(f.imq_count() == 1u);
}

TEST_CASE("IMQ posts are in the store in order before they are "
          "acknowledged",
          "[actors]") {
  fixture f;
  REQUIRE(outcome(f.imq_post("A", "A1")) == "OK");
  REQUIRE(outcome(f.imq_post("B", "B1")) == "OK");
  REQUIRE(outcome(f.imq_post("A", "A2")) == "OK");
  auto queued = f.stored_imq();
  REQUIRE(queued.size() == 3u);
  CHECK(queued[0].poster == "A");
  CHECK(queued[1].poster == "B");
  CHECK(queued[2].poster == "A");
  CHECK(queued[0].id < queued[1].id);
  CHECK(queued[1].id < queued[2].id);
}
