// Mailbox actor tests: FIFO order, loading from the store, retirement.
#include "tests/actors/fixture.hpp"

#include <string>
#include <thread>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("mailbox keeps FIFO order over many STOREs", "[actors]") {
  fixture f;
  auto mb = f.spawn_mailbox("alice");
  constexpr int n = 200;
  for (int i = 0; i < n; ++i)
    REQUIRE(outcome(f.mailbox_deliver(mb, "message " + std::to_string(i)))
            == "OK");
  CHECK(must(f.mailbox_count(mb)) == static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    auto text = f.mailbox_get(mb);
    REQUIRE(outcome(text) == "OK");
    REQUIRE(*text == "message " + std::to_string(i));
    REQUIRE(outcome(f.mailbox_delete(mb)) == "OK");
    REQUIRE(must(f.mailbox_count(mb)) == static_cast<uint64_t>(n - i - 1));
  }
  CHECK(outcome(f.mailbox_get(mb)) == ko(errc::mailbox_empty));
  CHECK(f.stored_mailbox("alice").empty());
}

TEST_CASE("mailbox get leaves the message and delete removes the oldest",
          "[actors]") {
  fixture f;
  auto mb = f.spawn_mailbox("alice");
  REQUIRE(outcome(f.mailbox_deliver(mb, "first")) == "OK");
  REQUIRE(outcome(f.mailbox_deliver(mb, "second")) == "OK");
  REQUIRE(outcome(f.mailbox_deliver(mb, "third")) == "OK");
  CHECK(must(f.mailbox_get(mb)) == "first");
  CHECK(must(f.mailbox_get(mb)) == "first");
  CHECK(must(f.mailbox_count(mb)) == 3u);
  REQUIRE(outcome(f.mailbox_delete(mb)) == "OK");
  CHECK(must(f.mailbox_count(mb)) == 2u);
  CHECK(must(f.mailbox_get(mb)) == "second");
  // Appending after a delete still goes to the end.
  REQUIRE(outcome(f.mailbox_deliver(mb, "fourth")) == "OK");
  REQUIRE(outcome(f.mailbox_delete(mb)) == "OK");
  CHECK(must(f.mailbox_get(mb)) == "third");
  REQUIRE(outcome(f.mailbox_delete(mb)) == "OK");
  CHECK(must(f.mailbox_get(mb)) == "fourth");
  CHECK(must(f.mailbox_count(mb)) == 1u);
  // Every acknowledged change is in the store already.
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"fourth"});
}

TEST_CASE("mailbox keeps texts byte for byte also through the store",
          "[actors]") {
  fixture f;
  auto mb = f.spawn_mailbox("alice");
  const std::vector<std::string> texts = {
    "  inner   spacing  kept ",
    std::string{"nul\0inside", 10},
    "\xff\xfe binary \x01",
    std::string(16 * 1024, 'x'),
    std::string{},
  };
  for (auto& text : texts)
    REQUIRE(outcome(f.mailbox_deliver(mb, text)) == "OK");
  CHECK(f.stored_mailbox("alice") == texts);
  // A new mailbox actor loads the same bytes back from the store.
  REQUIRE(outcome(f.mailbox_retire(mb)) == "OK");
  auto again = f.spawn_mailbox("alice");
  for (auto& text : texts) {
    auto got = f.mailbox_get(again);
    REQUIRE(outcome(got) == "OK");
    CHECK(*got == text);
    REQUIRE(outcome(f.mailbox_delete(again)) == "OK");
  }
  CHECK(outcome(f.mailbox_get(again)) == ko(errc::mailbox_empty));
}

TEST_CASE("empty mailbox: get and delete fail with mailbox_empty", "[actors]") {
  fixture f;
  auto mb = f.spawn_mailbox("alice");
  CHECK(must(f.mailbox_count(mb)) == 0u);
  CHECK(outcome(f.mailbox_get(mb)) == ko(errc::mailbox_empty));
  CHECK(outcome(f.mailbox_delete(mb)) == ko(errc::mailbox_empty));
  REQUIRE(outcome(f.mailbox_deliver(mb, "only")) == "OK");
  REQUIRE(outcome(f.mailbox_delete(mb)) == "OK");
  CHECK(must(f.mailbox_count(mb)) == 0u);
  CHECK(outcome(f.mailbox_get(mb)) == ko(errc::mailbox_empty));
  CHECK(outcome(f.mailbox_delete(mb)) == ko(errc::mailbox_empty));
}

TEST_CASE("mailbox STORE with nothing queued fails and changes nothing",
          "[actors]") {
  fixture f;
  auto mb = f.spawn_mailbox("alice");
  REQUIRE(outcome(f.mailbox_deliver(mb, "kept")) == "OK");
  CHECK(outcome(f.mailbox_store(mb, "sender")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.mailbox_store(mb, "nobody")) == ko(errc::nothing_to_store));
  CHECK(must(f.mailbox_count(mb)) == 1u);
  CHECK(must(f.mailbox_get(mb)) == "kept");
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"kept"});
}

TEST_CASE("a mailbox loads its owner's committed mail when spawned",
          "[actors]") {
  fixture f;
  // Mail moved in the store without any mailbox actor running.
  REQUIRE(outcome(f.imq_post("bob", "one")) == "OK");
  REQUIRE(outcome(f.imq_store("bob", "alice")) == "OK");
  REQUIRE(outcome(f.imq_post("bob", "two")) == "OK");
  REQUIRE(outcome(f.imq_store("bob", "alice")) == "OK");
  REQUIRE(outcome(f.imq_post("bob", "elsewhere")) == "OK");
  REQUIRE(outcome(f.imq_store("bob", "carol")) == "OK");
  auto mb = f.spawn_mailbox("alice");
  // Requests sent right away wait for the load: none sees an empty box.
  auto counted = f.self->request(mb, request_timeout, count_atom::value);
  auto first = f.self->request(mb, request_timeout, caf::get_atom::value);
  CHECK(must(await_reply<uint64_t>(counted)) == 2u);
  CHECK(must(await_reply<std::string>(first)) == "one");
  REQUIRE(outcome(f.mailbox_delete(mb)) == "OK");
  REQUIRE(outcome(f.mailbox_deliver(mb, "three")) == "OK");
  f.kill_and_wait(mb);
  // Killed, not retired: its acknowledged writes are committed anyway.
  auto next = f.spawn_mailbox("alice");
  CHECK(must(f.mailbox_count(next)) == 2u);
  CHECK(must(f.mailbox_get(next)) == "two");
  REQUIRE(outcome(f.mailbox_delete(next)) == "OK");
  CHECK(must(f.mailbox_get(next)) == "three");
  CHECK(f.stored_mailbox("carol") == std::vector<std::string>{"elsewhere"});
}

TEST_CASE("a retiring mailbox answers after its writes and its successor "
          "loads them",
          "[actors]") {
  fixture f;
  auto old = f.spawn_mailbox("alice");
  REQUIRE(outcome(f.mailbox_deliver(old, "a")) == "OK");
  REQUIRE(outcome(f.mailbox_deliver(old, "b")) == "OK");
  REQUIRE(outcome(f.imq_post("sender", "c")) == "OK");
  // STORE and DELMSG under way when the retirement and the successor come
  // (their commits held back by a lock): the successor must see both, or it
  // would show "a" again or miss "c".
  auto& self = f.self;
  write_lock lock{f.db_file()};
  auto stored = f.send_mailbox_store(old, "sender");
  auto deleted = self->request(old, request_timeout, caf::delete_atom::value);
  auto retired = self->request(old, request_timeout, retire_atom::value);
  auto next = f.spawn_mailbox("alice", old);
  auto counted = self->request(next, request_timeout, count_atom::value);
  auto first = self->request(next, request_timeout, caf::get_atom::value);
  // Not a wait for anything: a successor that wrongly did not wait for its
  // predecessor gets this long to load and answer before the writes commit
  // (and then fails the checks below). A correct one passes however long
  // this takes: every reply here waits for the lock's release, and nothing
  // has a deadline but the hang detector's request_timeout.
  std::this_thread::sleep_for(50ms);
  lock.release();
  CHECK(outcome(await_reply<caf::ok_atom>(stored)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(deleted)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(retired)) == "OK");
  CHECK(must(await_reply<uint64_t>(counted)) == 2u);
  CHECK(must(await_reply<std::string>(first)) == "b");
  // The retired mailbox is gone.
  CHECK_FALSE(f.mailbox_count(old));
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"b", "c"});
}
