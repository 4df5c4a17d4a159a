// Actor tests of the admin tool's messages: the registry's sessions, kick,
// passwd and purge (user delete), the imq's and writer's purge, the
// reader's users by glob (docs/OPERATIONS.md, "The admin tool").
#include <algorithm>
#include <tuple>

#include "caf/all.hpp"
#include "tests/actors/fixture.hpp"

using namespace smsp;
using namespace smsp::testing;

namespace {

using admin_removed = std::tuple<uint64_t, uint64_t>;
using admin_names = std::vector<std::string>;

std::vector<std::string> admin_posters(fixture& f) {
  std::vector<std::string> out;
  for (auto& msg : f.stored_imq())
    out.push_back(msg.poster);
  return out;
}

} // namespace

TEST_CASE("admin: sessions lists the users with a live session, kick ends "
          "one",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice");
  auto bob = f.registry_must_register("bob");
  f.registry_must_register("carol");
  REQUIRE(outcome(f.registry_logout(f.registry_must_register("dave"))) == "OK");
  CHECK(must(f.ask_registry<admin_names>(sessions_atom::value))
        == admin_names{"alice", "bob", "carol"});
  CHECK(outcome(f.ask_registry<caf::ok_atom>(kick_atom::value, "alice"))
        == "OK");
  f.expect_not_logged_in(alice, "alice");
  f.expect_session(bob, "bob");
  CHECK(must(f.ask_registry<admin_names>(sessions_atom::value))
        == admin_names{"bob", "carol"});
  // No session (any more), or no such user: the same error.
  CHECK(outcome(f.ask_registry<caf::ok_atom>(kick_atom::value, "alice"))
        == ko(errc::not_logged_in));
  CHECK(outcome(f.ask_registry<caf::ok_atom>(kick_atom::value, "nobody"))
        == ko(errc::not_logged_in));
  // A kicked user logs in again.
  f.expect_session(must(f.registry_login("alice", "secret")), "alice");
}

TEST_CASE("admin: passwd refuses the old password, accepts the new one and "
          "ends the old session, durably",
          "[actors]") {
  fixture f;
  auto old_session = f.registry_must_register("alice", "oldpass");
  auto bob = f.registry_must_register("bob", "bobpass");
  CHECK(outcome(
          f.ask_registry<caf::ok_atom>(passwd_atom::value, "alice", "newpass"))
        == "OK");
  f.expect_not_logged_in(old_session, "alice");
  CHECK(outcome(f.registry_login("alice", "oldpass"))
        == ko(errc::login_failed));
  f.expect_session(must(f.registry_login("alice", "newpass")), "alice");
  // Another user is untouched.
  f.expect_session(bob, "bob");
  CHECK(outcome(f.ask_registry<caf::ok_atom>(passwd_atom::value, "nobody",
                                             "whatever"))
        == ko(errc::no_such_user));
  CHECK(outcome(f.ask_registry<caf::ok_atom>(passwd_atom::value, "alice",
                                             "has space"))
        == ko(errc::bad_password));
  f.restart();
  CHECK(outcome(f.registry_login("alice", "oldpass"))
        == ko(errc::login_failed));
  f.expect_session(must(f.registry_login("alice", "newpass")), "alice");
  f.expect_session(must(f.registry_login("bob", "bobpass")), "bob");
}

TEST_CASE("admin: passwd of an account the registry has not cached",
          "[actors]") {
  fixture f;
  f.registry_must_register("alice", "oldpass");
  // After a restart the hash is only in the store.
  f.restart();
  CHECK(outcome(
          f.ask_registry<caf::ok_atom>(passwd_atom::value, "alice", "newpass"))
        == "OK");
  CHECK(outcome(f.registry_login("alice", "oldpass"))
        == ko(errc::login_failed));
  f.expect_session(must(f.registry_login("alice", "newpass")), "alice");
}

TEST_CASE("admin: delete removes the account, its session, its mailbox and "
          "its unstored posts, and leaves other users alone",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "alicepw");
  auto bob = f.registry_must_register("bob", "bobpw");
  auto carol = f.registry_must_register("carol", "carolpw");
  // Mail for bob (from alice), mail from bob to alice, and an unstored
  // post of each.
  REQUIRE(outcome(f.registry_post(alice, "for bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_post(bob, "for alice")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "alice")) == "OK");
  REQUIRE(outcome(f.registry_post(bob, "bob unstored")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "alice unstored")) == "OK");
  // bob's mailbox is active.
  REQUIRE(must(f.registry_count(bob, "bob")) == 1u);
  auto removed = must(f.ask_registry<admin_removed>(purge_atom::value, "bob"));
  CHECK(removed == admin_removed{1, 1});
  f.expect_not_logged_in(bob, "bob");
  CHECK(outcome(f.registry_login("bob", "bobpw")) == ko(errc::login_failed));
  CHECK(f.stored_mailbox("bob").empty());
  CHECK(admin_posters(f) == std::vector<std::string>{"alice"});
  CHECK(must(f.ask_imq<uint64_t>(count_atom::value)) == 1u);
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::no_such_user));
  // The mail bob sent is alice's now, and stays.
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"for alice"});
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  f.expect_session(carol, "carol");
  CHECK(must(f.ask_registry<admin_names>(sessions_atom::value))
        == admin_names{"alice", "carol"});
  CHECK(must(f.ask_node<admin_names>(f.reader, users_atom::value, "*"))
        == admin_names{"alice", "carol"});
  CHECK(outcome(f.ask_registry<admin_removed>(purge_atom::value, "bob"))
        == ko(errc::no_such_user));
  // Durable: after a restart bob is still gone, and the name is free again,
  // with an empty mailbox.
  f.restart();
  CHECK(outcome(f.registry_login("bob", "bobpw")) == ko(errc::login_failed));
  CHECK(admin_posters(f) == std::vector<std::string>{"alice"});
  CHECK(must(f.ask_imq<uint64_t>(count_atom::value)) == 1u);
  auto new_bob = f.registry_must_register("bob", "again");
  CHECK(must(f.registry_count(new_bob, "bob")) == 0u);
  f.expect_session(must(f.registry_login("alice", "alicepw")), "alice");
  // alice's unstored post is still hers to store.
  auto alice2 = must(f.registry_login("alice", "alicepw"));
  CHECK(outcome(f.registry_store(alice2, "carol")) == "OK");
  CHECK(f.stored_mailbox("carol")
        == std::vector<std::string>{"alice "
                                    "unstored"});
}

TEST_CASE("admin: delete of a user with an inactive mailbox and of an "
          "unknown user",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice");
  REQUIRE(outcome(f.registry_post(alice, "one")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  f.restart();
  CHECK(must(f.ask_registry<admin_removed>(purge_atom::value, "alice"))
        == admin_removed{1, 0});
  CHECK(f.stored_mailbox("alice").empty());
  CHECK(outcome(f.ask_registry<admin_removed>(purge_atom::value, "ghost"))
        == ko(errc::no_such_user));
  CHECK(outcome(f.ask_registry<admin_removed>(purge_atom::value, "bad name!"))
        == ko(errc::no_such_user));
}

TEST_CASE("admin: a delete takes effect after the user's requests sent "
          "before it",
          "[actors]") {
  fixture f;
  auto bob = f.registry_must_register("bob");
  // Sent back to back, not waited for: the post reaches the registry first,
  // so the delete removes it too.
  auto post = f.self->request(f.registry, request_timeout, post_atom::value,
                              bob, std::string{"in flight"});
  auto purge = f.self->request(f.registry, request_timeout, purge_atom::value,
                               std::string{"bob"});
  CHECK(outcome(await_reply<caf::ok_atom>(post)) == "OK");
  CHECK(must(await_reply<admin_removed>(purge)) == admin_removed{0, 1});
  CHECK(f.stored_imq().empty());
  CHECK(must(f.ask_imq<uint64_t>(count_atom::value)) == 0u);
}

TEST_CASE("admin: the reader lists accounts by glob, and counts rows",
          "[actors]") {
  fixture f;
  for (auto name : {"alice", "albert", "bob", "Alan", "al2"})
    f.registry_must_register(name);
  auto users = [&](const std::string& glob) {
    return must(f.ask_node<admin_names>(f.reader, users_atom::value, glob));
  };
  CHECK(users("*") == admin_names{"Alan", "al2", "albert", "alice", "bob"});
  CHECK(users("al*") == admin_names{"al2", "albert", "alice"});
  CHECK(users("al[0-9]") == admin_names{"al2"});
  CHECK(users("?ob") == admin_names{"bob"});
  CHECK(users("[^a]*") == admin_names{"Alan", "bob"});
  CHECK(users("zed*").empty());
  using totals = std::tuple<uint64_t, uint64_t, uint64_t>;
  CHECK(must(f.ask_node<totals>(f.reader, totals_atom::value))
        == totals{5, 0, 0});
}
