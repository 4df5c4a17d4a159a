// Registry tests: accounts, sessions, routing requests to mailboxes, ownership.
#include "tests/actors/fixture.hpp"

#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

// -- REGISTER -----------------------------------------------------------------

TEST_CASE("REGISTER returns a fresh cookie and starts a session", "[actors]") {
  fixture f;
  auto cookie = f.registry_register("alice", "s3cret");
  REQUIRE(outcome(cookie) == "OK");
  CHECK(is_cookie(*cookie));
  f.expect_session(*cookie, "alice");
  // The new account starts with an empty mailbox and nothing queued.
  CHECK(must(f.registry_count(*cookie, "alice")) == 0u);
  CHECK(outcome(f.registry_get(*cookie, "alice")) == ko(errc::mailbox_empty));
  CHECK(outcome(f.registry_store(*cookie, "alice"))
        == ko(errc::nothing_to_store));
}

TEST_CASE("REGISTER of an existing name fails with user_exists", "[actors]") {
  fixture f;
  auto first = f.registry_must_register("alice", "s3cret");
  CHECK(outcome(f.registry_register("alice", "s3cret"))
        == ko(errc::user_exists));
  CHECK(outcome(f.registry_register("alice", "other"))
        == ko(errc::user_exists));
  // Names are case-sensitive.
  auto upper = f.registry_register("Alice", "s3cret");
  REQUIRE(outcome(upper) == "OK");
  f.expect_session(*upper, "Alice");
  CHECK(outcome(f.registry_count(*upper, "alice"))
        == ko(errc::not_your_mailbox));
  // The failed attempts did not touch alice's session or password.
  f.expect_session(first, "alice");
  CHECK(outcome(f.registry_count(first, "Alice"))
        == ko(errc::not_your_mailbox));
  CHECK(outcome(f.registry_login("alice", "other")) == ko(errc::login_failed));
}

TEST_CASE("REGISTER rejects bad names and bad passwords", "[actors]") {
  fixture f;
  SECTION("bad names") {
    for (const std::string& name :
         {std::string{}, std::string(33, 'a'), std::string{"al ice"},
          std::string{"al-ice"}, std::string{"al\x7f"}}) {
      INFO("name: '" << name << "'");
      CHECK(outcome(f.registry_register(name, "s3cret"))
            == ko(errc::bad_username));
    }
    // A bad name is reported even when the password is bad too.
    CHECK(outcome(f.registry_register("a b", "")) == ko(errc::bad_username));
    CHECK(outcome(f.registry_register(std::string(32, 'a'), "s3cret")) == "OK");
  }
  SECTION("bad passwords") {
    for (const std::string& password :
         {std::string{}, std::string(129, 'p'), std::string{"pass word"},
          std::string{"pass\x7f"}, std::string{"pass\n"}}) {
      INFO("password: '" << password << "'");
      CHECK(outcome(f.registry_register("bob", password))
            == ko(errc::bad_password));
    }
    // The rejected attempts did not reserve the name.
    auto cookie = f.registry_register("bob", std::string(128, 'p'));
    CHECK(outcome(cookie) == "OK");
    CHECK(outcome(f.registry_login("bob", std::string(128, 'p'))) == "OK");
  }
}

TEST_CASE("concurrent REGISTERs of one name: exactly one succeeds",
          "[actors]") {
  fixture f;
  constexpr int n = 20;
  std::vector<std::unique_ptr<caf::scoped_actor>> clients;
  for (int i = 0; i < n; ++i)
    clients.emplace_back(std::make_unique<caf::scoped_actor>(f.sys));
  // Every request is on its way before the first reply is read.
  using handle_type
    = decltype((*clients[0])
                 ->request(f.registry, request_timeout, register_atom::value,
                           std::string{}, std::string{}));
  std::vector<handle_type> pending;
  for (int i = 0; i < n; ++i)
    pending.emplace_back((*clients[i])
                           ->request(f.registry, request_timeout,
                                     register_atom::value, std::string{"carol"},
                                     "pw" + std::to_string(i)));
  std::vector<int> winners;
  std::string winner_cookie;
  int exists = 0;
  for (int i = 0; i < n; ++i)
    pending[i].receive(
      [&](std::string& cookie) {
        CHECK(is_cookie(cookie));
        winners.push_back(i);
        winner_cookie = cookie;
      },
      [&](caf::error& err) {
        INFO("client " << i);
        CHECK(outcome_of(err) == ko(errc::user_exists));
        ++exists;
      });
  REQUIRE(winners.size() == 1);
  CHECK(exists == n - 1);
  // The winner holds carol's session.
  f.expect_session(winner_cookie, "carol");
  // The winner's password is carol's password; nobody else's is.
  auto winner = winners.front();
  CHECK(outcome(f.registry_login("carol", "pw" + std::to_string(winner)))
        == "OK");
  CHECK(
    outcome(f.registry_login("carol", "pw" + std::to_string((winner + 1) % n)))
    == ko(errc::login_failed));
}

// -- LOGIN, LOGOUT and sessions -----------------------------------------------

TEST_CASE("LOGIN with the right password returns a new cookie", "[actors]") {
  fixture f;
  auto first = f.registry_must_register("alice", "s3cret");
  auto second = f.registry_login("alice", "s3cret");
  REQUIRE(outcome(second) == "OK");
  CHECK(is_cookie(*second));
  CHECK(*second != first);
  f.expect_session(*second, "alice");
}

TEST_CASE("LOGIN fails the same way for a wrong password and an unknown user",
          "[actors]") {
  fixture f;
  auto cookie = f.registry_must_register("alice", "s3cret");
  auto wrong = f.registry_login("alice", "S3cret");
  auto unknown = f.registry_login("mallory", "s3cret");
  auto malformed = f.registry_login("alice", "s3 cret");
  auto bad_name = f.registry_login("no such user", "s3cret");
  CHECK(outcome(wrong) == ko(errc::login_failed));
  CHECK(outcome(unknown) == ko(errc::login_failed));
  CHECK(outcome(malformed) == ko(errc::login_failed));
  CHECK(outcome(bad_name) == ko(errc::login_failed));
  REQUIRE_FALSE(wrong);
  REQUIRE_FALSE(unknown);
  CHECK(wrong.error() == unknown.error());
  // A failed LOGIN leaves the live session alone.
  f.expect_session(cookie, "alice");
}

TEST_CASE("one live session per user: a new LOGIN ends the old cookie",
          "[actors]") {
  fixture f;
  auto first = f.registry_must_register("alice", "s3cret");
  // Something in the mailbox so that GET and DELETE could succeed.
  REQUIRE(outcome(f.registry_post(first, "kept")) == "OK");
  REQUIRE(outcome(f.registry_store(first, "alice")) == "OK");
  REQUIRE(outcome(f.registry_post(first, "queued")) == "OK");
  auto second = f.registry_login("alice", "s3cret");
  REQUIRE(outcome(second) == "OK");
  f.expect_not_logged_in(first, "alice");
  // The dead cookie neither deleted, nor stored, nor posted anything.
  CHECK(must(f.registry_count(*second, "alice")) == 1u);
  CHECK(must(f.registry_get(*second, "alice")) == "kept");
  REQUIRE(outcome(f.registry_store(*second, "alice")) == "OK");
  CHECK(f.registry_drain(*second, "alice")
        == std::vector<std::string>{"kept", "queued"});
  CHECK(f.imq_has_nothing_for("alice"));
  f.expect_session(*second, "alice");
  // And once more: the third cookie replaces the second.
  auto third = f.registry_login("alice", "s3cret");
  REQUIRE(outcome(third) == "OK");
  f.expect_not_logged_in(*second, "alice");
  f.expect_not_logged_in(first, "alice");
  f.expect_session(*third, "alice");
}

TEST_CASE("cookies are unique across many users", "[actors]") {
  fixture f;
  constexpr int n = 40;
  std::set<std::string> cookies;
  std::vector<std::pair<std::string, std::string>> users;
  for (int i = 0; i < n; ++i) {
    auto name = "user" + std::to_string(i);
    auto cookie = f.registry_must_register(name, "pw" + std::to_string(i));
    CHECK(is_cookie(cookie));
    cookies.insert(cookie);
    users.emplace_back(name, cookie);
  }
  CHECK(cookies.size() == n);
  // Every cookie still names its own user.
  for (auto& [name, cookie] : users)
    f.expect_session(cookie, name);
}

TEST_CASE("LOGOUT ends the session and a second LOGOUT fails", "[actors]") {
  fixture f;
  auto cookie = f.registry_must_register("alice", "s3cret");
  CHECK(outcome(f.registry_logout(cookie)) == "OK");
  f.expect_not_logged_in(cookie, "alice");
  CHECK(f.imq_has_nothing_for("alice"));
  CHECK(outcome(f.registry_logout(cookie)) == ko(errc::not_logged_in));
  CHECK(outcome(f.registry_logout("")) == ko(errc::not_logged_in));
  CHECK(outcome(f.registry_logout(new_cookie())) == ko(errc::not_logged_in));
  // The account survives: LOGIN starts a new session.
  auto again = f.registry_login("alice", "s3cret");
  REQUIRE(outcome(again) == "OK");
  f.expect_session(*again, "alice");
  f.expect_not_logged_in(cookie, "alice");
}

TEST_CASE("LOGOUT of one user leaves other sessions alone", "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  CHECK(outcome(f.registry_logout(alice)) == "OK");
  f.expect_not_logged_in(alice, "alice");
  f.expect_session(bob, "bob");
}

// -- routed requests ----------------------------------------------------------

TEST_CASE("routed requests act as the caller: POST then STORE to oneself "
          "then GET returns the text",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
  REQUIRE(outcome(f.registry_post(alice, "note to self")) == "OK");
  // The post is queued under alice: bob has nothing to store.
  CHECK(outcome(f.registry_store(bob, "bob")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  CHECK(must(f.registry_get(alice, "alice")) == "note to self");
  // GET leaves the message; DELETE removes it.
  CHECK(must(f.registry_get(alice, "alice")) == "note to self");
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  REQUIRE(outcome(f.registry_delete(alice, "alice")) == "OK");
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
  CHECK(outcome(f.registry_get(alice, "alice")) == ko(errc::mailbox_empty));
  CHECK(outcome(f.registry_delete(alice, "alice")) == ko(errc::mailbox_empty));
  CHECK(outcome(f.registry_store(alice, "alice"))
        == ko(errc::nothing_to_store));
  // Bob never got anything.
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
}

TEST_CASE("routed requests keep texts byte for byte", "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  const std::string texts[] = {
    "  inner   spacing  kept ",
    std::string{"nul\0inside", 10},
    "\xff\xfe binary \x01",
    std::string(16 * 1024, 'x'),
    std::string{},
  };
  for (auto& text : texts) {
    REQUIRE(outcome(f.registry_post(alice, text)) == "OK");
    REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  }
  CHECK(f.registry_drain(alice, "alice")
        == std::vector<std::string>(std::begin(texts), std::end(texts)));
}

TEST_CASE("unknown cookies get not_logged_in for every routed request",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  f.expect_not_logged_in("", "alice");
  f.expect_not_logged_in(new_cookie(), "alice");
  f.expect_not_logged_in("alice", "alice");
  // A cookie of a different case is a different cookie.
  std::string upper = alice;
  for (auto& c : upper)
    if (c >= 'a' && c <= 'f')
      c = static_cast<char>(c - 'a' + 'A');
  if (upper != alice)
    f.expect_not_logged_in(upper, "alice");
  // None of it posted or changed anything.
  CHECK(f.imq_has_nothing_for("alice"));
  CHECK(f.imq_has_nothing_for(""));
  f.expect_session(alice, "alice");
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
}

TEST_CASE("COUNT GET and DELETE on another owner fail with not_your_mailbox",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  // Bob has mail, so a leak would show as a count or a text.
  REQUIRE(outcome(f.registry_post(bob, "private")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "bob")) == "OK");
  for (const std::string& owner :
       {std::string{"bob"}, std::string{"carol"}, std::string{"Alice"},
        std::string{"alice "}, std::string{}}) {
    INFO("owner: '" << owner << "'");
    CHECK(outcome(f.registry_count(alice, owner))
          == ko(errc::not_your_mailbox));
    CHECK(outcome(f.registry_get(alice, owner)) == ko(errc::not_your_mailbox));
    CHECK(outcome(f.registry_delete(alice, owner))
          == ko(errc::not_your_mailbox));
  }
  // Also when the caller has mail and the other mailbox is empty.
  REQUIRE(outcome(f.registry_delete(bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "mine")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  CHECK(outcome(f.registry_get(alice, "bob")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.registry_delete(alice, "bob")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.registry_get(bob, "alice")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.registry_delete(bob, "alice")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.registry_count(bob, "alice")) == ko(errc::not_your_mailbox));
  // Nothing was read from or deleted in the wrong mailbox.
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  CHECK(must(f.registry_get(alice, "alice")) == "mine");
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
  // The own name works for both.
  CHECK(outcome(f.registry_get(bob, "bob")) == ko(errc::mailbox_empty));
}

TEST_CASE("not_logged_in takes precedence over the other errors", "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(bob, "for bob")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_logout(alice)) == "OK");
  for (const std::string& dead : {alice, new_cookie(), std::string{}}) {
    for (const std::string& name : {std::string{"alice"}, std::string{"bob"},
                                    std::string{"carol"}, std::string{}}) {
      INFO("owner or target: '" << name << "'");
      // not_your_mailbox, no_such_user, nothing_to_store, mailbox_empty
      // would all apply otherwise.
      CHECK(outcome(f.registry_count(dead, name)) == ko(errc::not_logged_in));
      CHECK(outcome(f.registry_get(dead, name)) == ko(errc::not_logged_in));
      CHECK(outcome(f.registry_delete(dead, name)) == ko(errc::not_logged_in));
      CHECK(outcome(f.registry_store(dead, name)) == ko(errc::not_logged_in));
    }
  }
  // Bob's mail is untouched.
  CHECK(must(f.registry_count(bob, "bob")) == 1u);
  CHECK(must(f.registry_get(bob, "bob")) == "for bob");
}

// -- STORE --------------------------------------------------------------------

TEST_CASE("STORE through the registry delivers to the named user and into "
          "the own mailbox",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "hi bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(must(f.registry_count(bob, "bob")) == 1u);
  CHECK(must(f.registry_get(bob, "bob")) == "hi bob");
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
  // Bob answers.
  REQUIRE(outcome(f.registry_post(bob, "hi alice")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "alice")) == "OK");
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  CHECK(must(f.registry_get(alice, "alice")) == "hi alice");
  CHECK(must(f.registry_count(bob, "bob")) == 1u);
  // Storing into one's own mailbox appends behind what others sent.
  REQUIRE(outcome(f.registry_post(alice, "memo")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  CHECK(f.registry_drain(alice, "alice")
        == std::vector<std::string>{"hi alice", "memo"});
  CHECK(f.registry_drain(bob, "bob") == std::vector<std::string>{"hi bob"});
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.registry_store(bob, "alice")) == ko(errc::nothing_to_store));
}

TEST_CASE("STORE through the registry to an unknown user fails and keeps "
          "the message",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "first")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "second")) == "OK");
  for (const std::string& target : {std::string{"carol"}, std::string{"Bob"},
                                    std::string{"bob "}, std::string{}}) {
    INFO("target: '" << target << "'");
    CHECK(outcome(f.registry_store(alice, target)) == ko(errc::no_such_user));
  }
  // no_such_user wins over nothing_to_store too.
  CHECK(outcome(f.registry_store(bob, "carol")) == ko(errc::no_such_user));
  // Both messages are still queued, the most recent first.
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.registry_drain(bob, "bob")
        == std::vector<std::string>{"second", "first"});
  // A user registered later is a valid target from then on.
  REQUIRE(outcome(f.registry_post(alice, "welcome")) == "OK");
  CHECK(outcome(f.registry_store(alice, "carol")) == ko(errc::no_such_user));
  auto carol = f.registry_must_register("carol", "pw");
  REQUIRE(outcome(f.registry_store(alice, "carol")) == "OK");
  CHECK(f.registry_drain(carol, "carol")
        == std::vector<std::string>{"welcome"});
}

TEST_CASE("STORE through the registry with nothing posted fails with "
          "nothing_to_store",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.registry_store(alice, "alice"))
        == ko(errc::nothing_to_store));
  // Bob's posts are not alice's to store.
  REQUIRE(outcome(f.registry_post(bob, "from bob")) == "OK");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.registry_store(alice, "alice"))
        == ko(errc::nothing_to_store));
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
  // Posting after a failed STORE works as usual.
  REQUIRE(outcome(f.registry_post(alice, "from alice")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.registry_store(bob, "alice")) == "OK");
  CHECK(f.registry_drain(bob, "bob") == std::vector<std::string>{"from alice"});
  CHECK(f.registry_drain(alice, "alice")
        == std::vector<std::string>{"from bob"});
}

TEST_CASE("STORE through the registry takes the most recent message first",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "A1")) == "OK");
  REQUIRE(outcome(f.registry_post(bob, "B1")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "A2")) == "OK");
  REQUIRE(outcome(f.registry_post(bob, "B2")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "A3")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(must(f.registry_get(bob, "bob")) == "A3");
  // A post between two STOREs is the new most recent one.
  REQUIRE(outcome(f.registry_post(alice, "A4")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.registry_drain(bob, "bob")
        == std::vector<std::string>{"A3", "A4", "A2", "A1"});
  // Bob's own posts waited all along.
  REQUIRE(outcome(f.registry_store(bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "alice")) == "OK");
  CHECK(outcome(f.registry_store(bob, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.registry_drain(bob, "bob") == std::vector<std::string>{"B2"});
  CHECK(f.registry_drain(alice, "alice") == std::vector<std::string>{"B1"});
}

TEST_CASE("a mailbox is the same before and after its owner logs in again",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob_first = f.registry_must_register("bob", "hunter22");
  // alice stores into bob's mailbox first (bob never used it himself).
  REQUIRE(outcome(f.registry_post(alice, "early mail")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "second mail")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  auto bob = f.registry_login("bob", "hunter22");
  REQUIRE(outcome(bob) == "OK");
  CHECK(must(f.registry_count(*bob, "bob")) == 2u);
  CHECK(must(f.registry_get(*bob, "bob")) == "early mail");
  // Mail bob stored for himself survives his next LOGIN and a LOGOUT too.
  REQUIRE(outcome(f.registry_post(*bob, "self note")) == "OK");
  REQUIRE(outcome(f.registry_store(*bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_delete(*bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_logout(*bob)) == "OK");
  auto again = f.registry_login("bob", "hunter22");
  REQUIRE(outcome(again) == "OK");
  f.expect_not_logged_in(bob_first, "bob");
  f.expect_not_logged_in(*bob, "bob");
  CHECK(f.registry_drain(*again, "bob")
        == std::vector<std::string>{"second mail", "self note"});
  // alice's own empty mailbox was never confused with bob's.
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
}

TEST_CASE("STORE through the registry delivers between users", "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "lunch at noon?")) == "OK");
  // The registry queued it on the shared IMQ under alice's name.
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(must(f.registry_count(bob, "bob")) == 1u);
  CHECK(must(f.registry_get(bob, "bob")) == "lunch at noon?");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.imq_has_nothing_for("alice"));
  // A message posted directly on the IMQ under alice's name is hers to
  // store through the registry: the registry and the test share the IMQ.
  REQUIRE(outcome(f.imq_post("alice", "via the imq")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(f.registry_drain(bob, "bob")
        == std::vector<std::string>{"lunch at noon?", "via the imq"});
}

// -- account cache ------------------------------------------------------------

TEST_CASE("the account cache is bounded and accounts are looked up in the "
          "store",
          "[actors]") {
  options opts;
  opts.registry.account_cache = 5;
  fixture f{opts};
  constexpr int n = 20;
  auto name = [](int u) { return "u" + std::to_string(u); };
  auto password = [](int u) { return "pw" + std::to_string(u); };
  for (int u = 0; u < n; ++u)
    f.registry_must_register(name(u), password(u));
  auto figures = f.registry_stats();
  CHECK(figures.cached > 0u);
  CHECK(figures.cached <= 5u);
  // u0 left the cache long ago: its name is still taken.
  CHECK(outcome(f.registry_register(name(0), "other"))
        == ko(errc::user_exists));
  std::vector<std::string> cookies;
  for (int u = 0; u < n; ++u) {
    INFO("user " << name(u));
    CHECK(outcome(f.registry_login(name(u), password(u) + "x"))
          == ko(errc::login_failed));
    CHECK(outcome(f.registry_login(name(u), password((u + 1) % n)))
          == ko(errc::login_failed));
    cookies.push_back(must(f.registry_login(name(u), password(u))));
  }
  CHECK(f.registry_stats().cached <= 5u);
  // STORE to users out of the cache finds them in the store; unknown
  // names stay unknown.
  REQUIRE(outcome(f.registry_post(cookies[19], "hello u3")) == "OK");
  REQUIRE(outcome(f.registry_post(cookies[19], "hello u4")) == "OK");
  CHECK(outcome(f.registry_store(cookies[19], "nobody"))
        == ko(errc::no_such_user));
  REQUIRE(outcome(f.registry_store(cookies[19], name(4))) == "OK");
  REQUIRE(outcome(f.registry_store(cookies[19], name(3))) == "OK");
  CHECK(f.registry_stats().cached <= 5u);
  CHECK(f.registry_drain(cookies[3], name(3))
        == std::vector<std::string>{"hello u3"});
  CHECK(f.registry_drain(cookies[4], name(4))
        == std::vector<std::string>{"hello u4"});
}
