// The mailbox directory alone: activation, touch, idle collection,
// retirement and stop notices, with plain ints for handles and ids.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "actors/logic/mailbox_directory.hpp"

using namespace std::chrono_literals;
using smsp::steady_time;

namespace {

/// Handles and ids are the same ints here.
using directory = smsp::mailbox_directory<int, int>;

const steady_time t0 = steady_time{} + 1h;

std::vector<std::string>
users_of(const std::vector<std::pair<std::string, int>>& retired) {
  std::vector<std::string> out;
  for (auto& entry : retired)
    out.push_back(entry.first);
  return out;
}

} // namespace

TEST_CASE("an activated mailbox is found by touch until it retires",
          "[mailbox_directory]") {
  directory dir;
  CHECK(dir.touch("alice", t0) == nullptr);
  CHECK_FALSE(dir.is_active("alice"));
  dir.activate("alice", 1, 1, t0);
  REQUIRE(dir.touch("alice", t0 + 1s) != nullptr);
  CHECK(*dir.touch("alice", t0 + 1s) == 1);
  CHECK(dir.is_active("alice"));
  CHECK(dir.active_count() == 1);
  CHECK(dir.activations() == 1);
  CHECK_FALSE(dir.retiring("alice"));
}

TEST_CASE("retire_idle takes exactly the mailboxes unused since the cutoff, "
          "least recently used first",
          "[mailbox_directory]") {
  directory dir;
  dir.activate("a", 1, 1, t0);
  dir.activate("b", 2, 2, t0 + 1s);
  dir.activate("c", 3, 3, t0 + 2s);
  // a is used again: it is now the most recently used.
  dir.touch("a", t0 + 3s);
  // Inclusive cutoff: b (last used t0 + 1s) goes, c (t0 + 2s) stays.
  auto retired = dir.retire_idle(t0 + 1s);
  CHECK(users_of(retired) == std::vector<std::string>{"b"});
  CHECK(dir.active_count() == 2);
  CHECK(dir.retiring("b") == 2);
  CHECK(dir.passivations() == 1);
  retired = dir.retire_idle(t0 + 10s);
  CHECK(users_of(retired) == std::vector<std::string>{"c", "a"});
  CHECK(dir.active_count() == 0);
  CHECK(dir.retiring_count() == 3);
  CHECK(dir.retire_idle(t0 + 20s).empty());
}

TEST_CASE("a successor activated while its predecessor retires waits for "
          "that predecessor, and a late notice of the old one removes "
          "nothing newer",
          "[mailbox_directory]") {
  directory dir;
  dir.activate("alice", 1, 1, t0);
  dir.retire_idle(t0);
  // A request arrives: the registry activates a successor, which must wait
  // for mailbox 1's writes.
  REQUIRE(dir.retiring("alice") == 1);
  dir.activate("alice", 2, 2, t0 + 1s);
  CHECK(*dir.touch("alice", t0 + 1s) == 2);
  // The successor retires too before the predecessor finished.
  dir.retire_idle(t0 + 1s);
  CHECK(dir.retiring("alice") == 2);
  // The predecessor's answer and stop come late: they change nothing about
  // mailbox 2.
  dir.retired("alice", 1);
  CHECK(dir.stopped(1) == std::nullopt);
  CHECK(dir.retiring("alice") == 2);
  // Mailbox 2 finishes: alice has nothing left.
  dir.retired("alice", 2);
  CHECK_FALSE(dir.retiring("alice"));
  CHECK(dir.stopped(2) == std::nullopt);
  CHECK(dir.known_count() == 0);
}

TEST_CASE("an active mailbox that stops is forgotten and reported once",
          "[mailbox_directory]") {
  directory dir;
  dir.activate("alice", 1, 1, t0);
  dir.activate("bob", 2, 2, t0);
  CHECK(dir.stopped(1) == std::string{"alice"});
  CHECK(dir.touch("alice", t0) == nullptr);
  CHECK(*dir.touch("bob", t0) == 2);
  // A second notice, or one for an id never seen, changes nothing.
  CHECK(dir.stopped(1) == std::nullopt);
  CHECK(dir.stopped(42) == std::nullopt);
  CHECK(dir.active_count() == 1);
  // The next request activates a new one.
  dir.activate("alice", 3, 3, t0 + 1s);
  CHECK(*dir.touch("alice", t0 + 1s) == 3);
  CHECK(dir.activations() == 3);
}

TEST_CASE("a retiring mailbox that stops is no longer waited for",
          "[mailbox_directory]") {
  directory dir;
  dir.activate("alice", 1, 1, t0);
  dir.retire_idle(t0);
  // Its stop is not an active mailbox's: nothing is reported.
  CHECK(dir.stopped(1) == std::nullopt);
  CHECK_FALSE(dir.retiring("alice"));
  CHECK(dir.known_count() == 0);
}

TEST_CASE("for_each reaches every active and retiring mailbox once",
          "[mailbox_directory]") {
  directory dir;
  dir.activate("a", 1, 1, t0);
  dir.activate("b", 2, 2, t0 + 1s);
  dir.retire_idle(t0);
  dir.activate("a", 3, 3, t0 + 2s);
  std::vector<int> seen;
  dir.for_each([&](int h) { seen.push_back(h); });
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int>{1, 2, 3});
}

TEST_CASE("retire_now moves one user's active mailbox to retiring at once",
          "[mailbox_directory]") {
  directory dir;
  CHECK_FALSE(dir.retire_now("alice"));
  dir.activate("alice", 1, 1, t0);
  dir.activate("bob", 2, 2, t0);
  auto handle = dir.retire_now("alice");
  REQUIRE(handle);
  CHECK(*handle == 1);
  CHECK_FALSE(dir.is_active("alice"));
  CHECK(dir.retiring("alice") == 1);
  // bob is untouched; an admin retirement is no passivation.
  CHECK(dir.is_active("bob"));
  CHECK(dir.active_count() == 1);
  CHECK(dir.retiring_count() == 1);
  CHECK(dir.passivations() == 0);
  // A successor would wait for it; its stop forgets it.
  dir.retired("alice", 1);
  CHECK_FALSE(dir.retiring("alice"));
  CHECK(dir.known_count() == 2);
  CHECK_FALSE(dir.stopped(1));
  CHECK(dir.known_count() == 1);
  CHECK_FALSE(dir.retire_now("alice"));
}
