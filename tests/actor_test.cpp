// Actor tests: every actor through its typed interface on a real actor system.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "actors/actors.hpp"
#include "actors/credentials.hpp"
#include "actors/messages.hpp"
#include "caf/all.hpp"

using namespace smsp;

namespace {

// -- helpers ------------------------------------------------------------------

/// Every request gets an answer well within this, or the test fails (a hang
/// turns into a caf timeout error instead of a stuck binary).
constexpr auto request_timeout = std::chrono::seconds(5);

/// libsodium must be initialized once before cookies or hashes.
const bool crypto_ready = init_crypto();

/// Cheap Argon2id for tests: the smallest cost, 2 workers, a long queue.
const hasher_config fast_hasher{pwhash_cost::min, 2, 1024};

bool is_lower_hex(const std::string& str) {
  for (char c : str)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

bool is_cookie(const std::string& str) {
  return str.size() == 32 && is_lower_hex(str);
}

/// The reply line a failed request would give, "OK" for a value, or a
/// description of a non-smsp error. Lets a check read
/// `CHECK(outcome(r) == ko(errc::user_exists))` and print well when it fails.
std::string outcome_of(const caf::error& err) {
  if (!err)
    return "OK";
  if (err.category() == error_category)
    return error_reply(static_cast<errc>(err.code()));
  return "caf error: " + caf::to_string(err);
}

template<class T>
std::string outcome(const caf::expected<T>& result) {
  return result ? std::string{"OK"} : outcome_of(result.error());
}

std::string ko(errc code) {
  return error_reply(code);
}

/// Sends one request and waits for its single-value reply.
template<class T, class Handle, class... Ts>
caf::expected<T> ask(caf::scoped_actor& self, const Handle& dest, Ts&&... xs) {
  std::optional<T> value;
  caf::error err;
  self->request(dest, request_timeout, std::forward<Ts>(xs)...)
    .receive([&](T x) { value = std::move(x); },
             [&](caf::error& e) { err = std::move(e); });
  if (value)
    return std::move(*value);
  if (!err)
    err = caf::make_error(caf::sec::runtime_error, "no reply");
  return err;
}

/// What the registry's session lookups answer.
struct session_info {
  std::string user;
  mailbox_actor mailbox;
};

/// Owns an actor system with a hasher, a registry and an IMQ, plus a
/// scoped actor that talks to them.
struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  hasher_actor hasher;
  registry_actor registry;
  imq_actor imq;

  fixture()
      : sys{cfg.set("scheduler.max-threads", 2)}
      , self{sys}
      , hasher{spawn_hasher(sys, fast_hasher)}
      , registry{spawn_registry(sys, hasher)}
      , imq{spawn_imq(sys)} {
    REQUIRE(crypto_ready);
  }

  ~fixture() {
    self->send_exit(registry, caf::exit_reason::user_shutdown);
    self->send_exit(imq, caf::exit_reason::user_shutdown);
    self->send_exit(hasher, caf::exit_reason::user_shutdown);
  }

  // -- registry -------------------------------------------------------------

  caf::expected<std::string> register_user(const std::string& name,
                                           const std::string& password) {
    return ask<std::string>(self, registry, register_atom::value, name,
                            password);
  }

  /// Registers a user that must be accepted and returns the cookie.
  std::string must_register(const std::string& name,
                            const std::string& password = "secret") {
    auto cookie = register_user(name, password);
    REQUIRE(outcome(cookie) == "OK");
    return *cookie;
  }

  caf::expected<std::string> login(const std::string& name,
                                   const std::string& password) {
    return ask<std::string>(self, registry, login_atom::value, name, password);
  }

  caf::expected<caf::ok_atom> logout(const std::string& cookie) {
    return ask<caf::ok_atom>(self, registry, logout_atom::value, cookie);
  }

  template<class... Ts>
  caf::expected<session_info> session_impl(Ts&&... xs) {
    std::optional<session_info> value;
    caf::error err;
    self
      ->request(registry, request_timeout, session_atom::value,
                std::forward<Ts>(xs)...)
      .receive(
        [&](std::string& user, mailbox_actor& mailbox) {
          value = session_info{std::move(user), std::move(mailbox)};
        },
        [&](caf::error& e) { err = std::move(e); });
    if (value)
      return std::move(*value);
    return err;
  }

  /// The caller's name and own mailbox.
  caf::expected<session_info> session(const std::string& cookie) {
    return session_impl(cookie);
  }

  /// The caller's name and `target`'s mailbox.
  caf::expected<session_info> session(const std::string& cookie,
                                      const std::string& target) {
    return session_impl(cookie, target);
  }

  // -- mailbox --------------------------------------------------------------

  caf::expected<caf::ok_atom> put(const mailbox_actor& mb, std::string text) {
    return ask<caf::ok_atom>(self, mb, caf::put_atom::value, std::move(text));
  }

  caf::expected<std::string> get(const mailbox_actor& mb) {
    return ask<std::string>(self, mb, caf::get_atom::value);
  }

  caf::expected<caf::ok_atom> del(const mailbox_actor& mb) {
    return ask<caf::ok_atom>(self, mb, caf::delete_atom::value);
  }

  caf::expected<uint64_t> count(const mailbox_actor& mb) {
    return ask<uint64_t>(self, mb, count_atom::value);
  }

  // -- IMQ ------------------------------------------------------------------

  caf::expected<caf::ok_atom> post(const std::string& poster,
                                   const std::string& text) {
    return ask<caf::ok_atom>(self, imq, post_atom::value, poster, text);
  }

  caf::expected<caf::ok_atom> store(const std::string& poster,
                                    const mailbox_actor& target) {
    return ask<caf::ok_atom>(self, imq, store_atom::value, poster, target);
  }

  /// Kills `mb` and waits until it is gone.
  void kill_and_wait(const mailbox_actor& mb) {
    self->monitor(mb);
    self->send_exit(mb, caf::exit_reason::kill);
    bool down = false;
    self->receive(
      [&](caf::down_msg& msg) { down = msg.source == mb.address(); },
      caf::after(request_timeout) >> [] {});
    REQUIRE(down);
  }
};

} // namespace

// -- credentials --------------------------------------------------------------

TEST_CASE("usernames are 1-32 ASCII letters and digits", "[actors]") {
  CHECK(valid_username("a"));
  CHECK(valid_username("Z"));
  CHECK(valid_username("0"));
  CHECK(valid_username("Alice42"));
  CHECK(valid_username(std::string(32, 'x')));
  CHECK_FALSE(valid_username(std::string(33, 'x')));
  CHECK_FALSE(valid_username(""));
  CHECK_FALSE(valid_username("ali ce"));
  CHECK_FALSE(valid_username("alice "));
  CHECK_FALSE(valid_username("al-ice"));
  CHECK_FALSE(valid_username("al_ice"));
  CHECK_FALSE(valid_username("al.ice"));
  CHECK_FALSE(valid_username("\xc3\xa9t\xc3\xa9")); // "été" in UTF-8
  CHECK_FALSE(valid_username(std::string_view{"ab\0c", 4}));
}

TEST_CASE("passwords are 1-128 bytes of printable ASCII without space",
          "[actors]") {
  CHECK(valid_password("!"));
  CHECK(valid_password("~"));
  CHECK(valid_password("s3cret!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
  CHECK(valid_password(std::string(128, 'p')));
  CHECK_FALSE(valid_password(std::string(129, 'p')));
  CHECK_FALSE(valid_password(""));
  CHECK_FALSE(valid_password("pass word"));
  CHECK_FALSE(valid_password(" "));
  CHECK_FALSE(valid_password("pass\x7f"));
  CHECK_FALSE(valid_password("pass\tword"));
  CHECK_FALSE(valid_password("pass\x80"));
  CHECK_FALSE(valid_password(std::string_view{"pa\0ss", 5}));
}

TEST_CASE("cookies are 32 lowercase hex characters and do not repeat",
          "[actors]") {
  REQUIRE(crypto_ready);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto cookie = new_cookie();
    INFO("cookie: " << cookie);
    REQUIRE(is_cookie(cookie));
    seen.insert(cookie);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("password hashes verify the right password only", "[actors]") {
  REQUIRE(crypto_ready);
  auto hash = hash_password("s3cret", pwhash_cost::min);
  REQUIRE(hash.has_value());
  CHECK(hash->rfind("$argon2id$", 0) == 0);
  CHECK(hash->find("s3cret") == std::string::npos);
  CHECK(verify_password(*hash, "s3cret"));
  CHECK_FALSE(verify_password(*hash, "s3cret "));
  CHECK_FALSE(verify_password(*hash, "S3cret"));
  CHECK_FALSE(verify_password(*hash, ""));
  CHECK_FALSE(verify_password("not a hash", "s3cret"));
  CHECK_FALSE(verify_password("", "s3cret"));
  // A random salt: the same password never hashes to the same string.
  auto again = hash_password("s3cret", pwhash_cost::min);
  REQUIRE(again.has_value());
  CHECK(*again != *hash);
  CHECK(verify_password(*again, "s3cret"));
}

TEST_CASE("hash costs parse and print", "[actors]") {
  for (auto cost :
       {pwhash_cost::interactive, pwhash_cost::moderate, pwhash_cost::min})
    CHECK(parse_pwhash_cost(to_string(cost)) == cost);
  CHECK_FALSE(parse_pwhash_cost("fast").has_value());
  CHECK_FALSE(parse_pwhash_cost("").has_value());
}

// -- registry: REGISTER -------------------------------------------------------

TEST_CASE("REGISTER returns a fresh cookie and starts a session", "[actors]") {
  fixture f;
  auto cookie = f.register_user("alice", "s3cret");
  REQUIRE(outcome(cookie) == "OK");
  CHECK(is_cookie(*cookie));
  auto s = f.session(*cookie);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "alice");
}

TEST_CASE("REGISTER of an existing name fails with user_exists", "[actors]") {
  fixture f;
  auto first = f.must_register("alice", "s3cret");
  CHECK(outcome(f.register_user("alice", "s3cret")) == ko(errc::user_exists));
  CHECK(outcome(f.register_user("alice", "other")) == ko(errc::user_exists));
  // Names are case-sensitive.
  CHECK(outcome(f.register_user("Alice", "s3cret")) == "OK");
  // The failed attempts did not touch alice's session or password.
  auto s = f.session(first);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "alice");
  CHECK(outcome(f.login("alice", "other")) == ko(errc::login_failed));
}

TEST_CASE("REGISTER rejects bad names and bad passwords", "[actors]") {
  fixture f;
  SECTION("bad names") {
    for (const std::string& name :
         {std::string{}, std::string(33, 'a'), std::string{"al ice"},
          std::string{"al-ice"}, std::string{"al\x7f"}}) {
      INFO("name: '" << name << "'");
      CHECK(outcome(f.register_user(name, "s3cret")) == ko(errc::bad_username));
    }
    // A bad name is reported even when the password is bad too.
    CHECK(outcome(f.register_user("a b", "")) == ko(errc::bad_username));
    CHECK(outcome(f.register_user(std::string(32, 'a'), "s3cret")) == "OK");
  }
  SECTION("bad passwords") {
    for (const std::string& password :
         {std::string{}, std::string(129, 'p'), std::string{"pass word"},
          std::string{"pass\x7f"}, std::string{"pass\n"}}) {
      INFO("password: '" << password << "'");
      CHECK(outcome(f.register_user("bob", password)) ==
            ko(errc::bad_password));
    }
    // The rejected attempts did not reserve the name.
    auto cookie = f.register_user("bob", std::string(128, 'p'));
    CHECK(outcome(cookie) == "OK");
    CHECK(outcome(f.login("bob", std::string(128, 'p'))) == "OK");
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
  using handle_type =
    decltype((*clients[0])
               ->request(f.registry, request_timeout, register_atom::value,
                         std::string{}, std::string{}));
  std::vector<handle_type> pending;
  for (int i = 0; i < n; ++i)
    pending.emplace_back((*clients[i])
                           ->request(f.registry, request_timeout,
                                     register_atom::value, std::string{"carol"},
                                     "pw" + std::to_string(i)));
  std::vector<int> winners;
  int exists = 0;
  for (int i = 0; i < n; ++i)
    pending[i].receive(
      [&](std::string& cookie) {
        CHECK(is_cookie(cookie));
        winners.push_back(i);
      },
      [&](caf::error& err) {
        INFO("client " << i);
        CHECK(outcome_of(err) == ko(errc::user_exists));
        ++exists;
      });
  REQUIRE(winners.size() == 1);
  CHECK(exists == n - 1);
  // The winner's password is carol's password; nobody else's is.
  auto winner = winners.front();
  CHECK(outcome(f.login("carol", "pw" + std::to_string(winner))) == "OK");
  CHECK(outcome(f.login("carol", "pw" + std::to_string((winner + 1) % n))) ==
        ko(errc::login_failed));
}

// -- registry: LOGIN, LOGOUT and sessions -------------------------------------

TEST_CASE("LOGIN with the right password returns a new cookie", "[actors]") {
  fixture f;
  auto first = f.must_register("alice", "s3cret");
  auto second = f.login("alice", "s3cret");
  REQUIRE(outcome(second) == "OK");
  CHECK(is_cookie(*second));
  CHECK(*second != first);
  auto s = f.session(*second);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "alice");
}

TEST_CASE("LOGIN fails the same way for a wrong password and an unknown user",
          "[actors]") {
  fixture f;
  auto cookie = f.must_register("alice", "s3cret");
  auto wrong = f.login("alice", "S3cret");
  auto unknown = f.login("mallory", "s3cret");
  auto malformed = f.login("alice", "s3 cret");
  auto bad_name = f.login("no such user", "s3cret");
  CHECK(outcome(wrong) == ko(errc::login_failed));
  CHECK(outcome(unknown) == ko(errc::login_failed));
  CHECK(outcome(malformed) == ko(errc::login_failed));
  CHECK(outcome(bad_name) == ko(errc::login_failed));
  REQUIRE_FALSE(wrong);
  REQUIRE_FALSE(unknown);
  CHECK(wrong.error() == unknown.error());
  // A failed LOGIN leaves the live session alone.
  auto s = f.session(cookie);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "alice");
}

TEST_CASE("one live session per user: a new LOGIN ends the old cookie",
          "[actors]") {
  fixture f;
  auto first = f.must_register("alice", "s3cret");
  auto second = f.login("alice", "s3cret");
  REQUIRE(outcome(second) == "OK");
  CHECK(outcome(f.session(first)) == ko(errc::not_logged_in));
  CHECK(outcome(f.session(first, "alice")) == ko(errc::not_logged_in));
  CHECK(outcome(f.logout(first)) == ko(errc::not_logged_in));
  auto s = f.session(*second);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "alice");
  // And once more: the third cookie replaces the second.
  auto third = f.login("alice", "s3cret");
  REQUIRE(outcome(third) == "OK");
  CHECK(outcome(f.session(*second)) == ko(errc::not_logged_in));
  CHECK(outcome(f.session(*third)) == "OK");
}

TEST_CASE("cookies are unique across many users", "[actors]") {
  fixture f;
  constexpr int n = 40;
  std::set<std::string> cookies;
  std::vector<std::pair<std::string, std::string>> users;
  for (int i = 0; i < n; ++i) {
    auto name = "user" + std::to_string(i);
    auto cookie = f.must_register(name, "pw" + std::to_string(i));
    CHECK(is_cookie(cookie));
    cookies.insert(cookie);
    users.emplace_back(name, cookie);
  }
  CHECK(cookies.size() == n);
  // Every cookie still names its own user.
  for (auto& [name, cookie] : users) {
    auto s = f.session(cookie);
    REQUIRE(outcome(s) == "OK");
    CHECK(s->user == name);
  }
}

TEST_CASE("LOGOUT ends the session and a second LOGOUT fails", "[actors]") {
  fixture f;
  auto cookie = f.must_register("alice", "s3cret");
  CHECK(outcome(f.logout(cookie)) == "OK");
  CHECK(outcome(f.session(cookie)) == ko(errc::not_logged_in));
  CHECK(outcome(f.logout(cookie)) == ko(errc::not_logged_in));
  CHECK(outcome(f.logout("")) == ko(errc::not_logged_in));
  CHECK(outcome(f.logout(new_cookie())) == ko(errc::not_logged_in));
  // The account survives: LOGIN starts a new session.
  auto again = f.login("alice", "s3cret");
  REQUIRE(outcome(again) == "OK");
  CHECK(outcome(f.session(*again)) == "OK");
}

TEST_CASE("LOGOUT of one user leaves other sessions alone", "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  CHECK(outcome(f.logout(alice)) == "OK");
  auto s = f.session(bob);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "bob");
}

TEST_CASE("session(cookie) names the caller and gives a working mailbox",
          "[actors]") {
  fixture f;
  auto cookie = f.must_register("alice", "s3cret");
  auto s = f.session(cookie);
  REQUIRE(outcome(s) == "OK");
  CHECK(s->user == "alice");
  REQUIRE(s->mailbox);
  CHECK(outcome(f.count(s->mailbox)) == "OK");
  CHECK(*f.count(s->mailbox) == 0u);
  // The same user gets the same mailbox every time, also after a new LOGIN.
  auto again = f.session(cookie);
  REQUIRE(outcome(again) == "OK");
  CHECK(again->mailbox == s->mailbox);
  auto relogin = f.login("alice", "s3cret");
  REQUIRE(outcome(relogin) == "OK");
  auto third = f.session(*relogin);
  REQUIRE(outcome(third) == "OK");
  CHECK(third->mailbox == s->mailbox);
  // Unknown cookies are rejected.
  CHECK(outcome(f.session("")) == ko(errc::not_logged_in));
  CHECK(outcome(f.session(new_cookie())) == ko(errc::not_logged_in));
}

TEST_CASE("session with a target gives the mailbox of that user", "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto to_bob = f.session(alice, "bob");
  REQUIRE(outcome(to_bob) == "OK");
  CHECK(to_bob->user == "alice"); // the caller, not the target
  REQUIRE(to_bob->mailbox);
  auto bobs_own = f.session(bob);
  REQUIRE(outcome(bobs_own) == "OK");
  CHECK(bobs_own->mailbox == to_bob->mailbox);
  auto alices_own = f.session(alice);
  REQUIRE(outcome(alices_own) == "OK");
  CHECK(alices_own->mailbox != to_bob->mailbox);
  // What alice puts there, bob finds in his mailbox.
  REQUIRE(outcome(f.put(to_bob->mailbox, "hi bob")) == "OK");
  CHECK(*f.count(bobs_own->mailbox) == 1u);
  CHECK(*f.get(bobs_own->mailbox) == "hi bob");
  CHECK(*f.count(alices_own->mailbox) == 0u);
  // Targeting oneself is the own mailbox.
  auto self_target = f.session(alice, "alice");
  REQUIRE(outcome(self_target) == "OK");
  CHECK(self_target->mailbox == alices_own->mailbox);
  // Unknown targets and dead cookies.
  CHECK(outcome(f.session(alice, "carol")) == ko(errc::no_such_user));
  CHECK(outcome(f.session(alice, "Bob")) == ko(errc::no_such_user));
  CHECK(outcome(f.session(alice, "")) == ko(errc::no_such_user));
  CHECK(outcome(f.session(new_cookie(), "bob")) == ko(errc::not_logged_in));
  CHECK(outcome(f.session(new_cookie(), "carol")) == ko(errc::not_logged_in));
}

TEST_CASE("a target mailbox is the same before and after its owner logs in",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  f.must_register("bob", "hunter22");
  // alice asks for bob's mailbox first (bob never asked for it himself).
  auto first = f.session(alice, "bob");
  REQUIRE(outcome(first) == "OK");
  auto second = f.session(alice, "bob");
  REQUIRE(outcome(second) == "OK");
  CHECK(first->mailbox == second->mailbox);
  REQUIRE(outcome(f.put(first->mailbox, "early mail")) == "OK");
  auto bob = f.login("bob", "hunter22");
  REQUIRE(outcome(bob) == "OK");
  auto own = f.session(*bob);
  REQUIRE(outcome(own) == "OK");
  CHECK(own->mailbox == first->mailbox);
  CHECK(*f.get(own->mailbox) == "early mail");
}

// -- mailbox ------------------------------------------------------------------

TEST_CASE("mailbox keeps FIFO order over many puts", "[actors]") {
  fixture f;
  auto mb = spawn_mailbox(f.sys, "alice");
  constexpr int n = 200;
  for (int i = 0; i < n; ++i)
    REQUIRE(outcome(f.put(mb, "message " + std::to_string(i))) == "OK");
  REQUIRE(outcome(f.count(mb)) == "OK");
  CHECK(*f.count(mb) == static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    auto text = f.get(mb);
    REQUIRE(outcome(text) == "OK");
    REQUIRE(*text == "message " + std::to_string(i));
    REQUIRE(outcome(f.del(mb)) == "OK");
    REQUIRE(*f.count(mb) == static_cast<uint64_t>(n - i - 1));
  }
  CHECK(outcome(f.get(mb)) == ko(errc::mailbox_empty));
}

TEST_CASE("mailbox get leaves the message and delete removes the oldest",
          "[actors]") {
  fixture f;
  auto mb = spawn_mailbox(f.sys, "alice");
  REQUIRE(outcome(f.put(mb, "first")) == "OK");
  REQUIRE(outcome(f.put(mb, "second")) == "OK");
  REQUIRE(outcome(f.put(mb, "third")) == "OK");
  CHECK(*f.get(mb) == "first");
  CHECK(*f.get(mb) == "first");
  CHECK(*f.count(mb) == 3u);
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(*f.count(mb) == 2u);
  CHECK(*f.get(mb) == "second");
  // Appending after a delete still goes to the end.
  REQUIRE(outcome(f.put(mb, "fourth")) == "OK");
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(*f.get(mb) == "third");
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(*f.get(mb) == "fourth");
  CHECK(*f.count(mb) == 1u);
}

TEST_CASE("mailbox keeps texts byte for byte", "[actors]") {
  fixture f;
  auto mb = spawn_mailbox(f.sys, "alice");
  const std::string texts[] = {
    "  inner   spacing  kept ",
    std::string{"nul\0inside", 10},
    "\xff\xfe binary \x01",
    std::string(16 * 1024, 'x'),
  };
  for (auto& text : texts)
    REQUIRE(outcome(f.put(mb, text)) == "OK");
  for (auto& text : texts) {
    auto got = f.get(mb);
    REQUIRE(outcome(got) == "OK");
    CHECK(*got == text);
    REQUIRE(outcome(f.del(mb)) == "OK");
  }
}

TEST_CASE("empty mailbox: get and delete fail with mailbox_empty", "[actors]") {
  fixture f;
  auto mb = spawn_mailbox(f.sys, "alice");
  CHECK(*f.count(mb) == 0u);
  CHECK(outcome(f.get(mb)) == ko(errc::mailbox_empty));
  CHECK(outcome(f.del(mb)) == ko(errc::mailbox_empty));
  REQUIRE(outcome(f.put(mb, "only")) == "OK");
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(*f.count(mb) == 0u);
  CHECK(outcome(f.get(mb)) == ko(errc::mailbox_empty));
  CHECK(outcome(f.del(mb)) == ko(errc::mailbox_empty));
}

// -- IMQ and STORE ------------------------------------------------------------

TEST_CASE("STORE takes the most recent message of its own poster only",
          "[actors]") {
  fixture f;
  auto mb_a = spawn_mailbox(f.sys, "target1");
  auto mb_b = spawn_mailbox(f.sys, "target2");
  REQUIRE(outcome(f.post("A", "A1")) == "OK");
  REQUIRE(outcome(f.post("B", "B1")) == "OK");
  REQUIRE(outcome(f.post("A", "A2")) == "OK");
  REQUIRE(outcome(f.post("B", "B2")) == "OK");

  REQUIRE(outcome(f.store("A", mb_a)) == "OK");
  CHECK(*f.count(mb_a) == 1u);
  CHECK(*f.get(mb_a) == "A2");
  REQUIRE(outcome(f.store("A", mb_a)) == "OK");
  CHECK(*f.count(mb_a) == 2u);
  CHECK(outcome(f.store("A", mb_a)) == ko(errc::nothing_to_store));
  CHECK(*f.count(mb_a) == 2u);
  // mb_a holds A2 then A1 and nothing of B's.
  CHECK(*f.get(mb_a) == "A2");
  REQUIRE(outcome(f.del(mb_a)) == "OK");
  CHECK(*f.get(mb_a) == "A1");
  REQUIRE(outcome(f.del(mb_a)) == "OK");
  CHECK(outcome(f.get(mb_a)) == ko(errc::mailbox_empty));

  // B's messages were waiting all along.
  REQUIRE(outcome(f.store("B", mb_b)) == "OK");
  REQUIRE(outcome(f.store("B", mb_b)) == "OK");
  CHECK(outcome(f.store("B", mb_b)) == ko(errc::nothing_to_store));
  CHECK(*f.count(mb_b) == 2u);
  CHECK(*f.get(mb_b) == "B2");
  REQUIRE(outcome(f.del(mb_b)) == "OK");
  CHECK(*f.get(mb_b) == "B1");
}

TEST_CASE("STORE with nothing posted fails with nothing_to_store", "[actors]") {
  fixture f;
  auto mb = spawn_mailbox(f.sys, "target");
  CHECK(outcome(f.store("A", mb)) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.post("B", "B1")) == "OK");
  CHECK(outcome(f.store("A", mb)) == ko(errc::nothing_to_store));
  CHECK(outcome(f.store("", mb)) == ko(errc::nothing_to_store));
  CHECK(*f.count(mb) == 0u);
  // Posting after a failed STORE works as usual.
  REQUIRE(outcome(f.post("A", "A1")) == "OK");
  CHECK(outcome(f.store("A", mb)) == "OK");
  CHECK(*f.get(mb) == "A1");
}

TEST_CASE("STORE into a dead mailbox fails and keeps the message on the IMQ",
          "[actors]") {
  fixture f;
  auto dead = spawn_mailbox(f.sys, "gone");
  auto live = spawn_mailbox(f.sys, "here");
  REQUIRE(outcome(f.post("A", "A1")) == "OK");
  REQUIRE(outcome(f.post("A", "A2")) == "OK");
  f.kill_and_wait(dead);

  auto failed = f.store("A", dead);
  INFO("STORE into a dead mailbox: " << outcome(failed));
  CHECK_FALSE(failed);
  // Failing twice loses nothing either.
  CHECK_FALSE(f.store("A", dead));

  // The message is back at its old place: the next STORE delivers A2 (the
  // most recent), then A1.
  REQUIRE(outcome(f.store("A", live)) == "OK");
  CHECK(*f.count(live) == 1u);
  CHECK(*f.get(live) == "A2");
  REQUIRE(outcome(f.store("A", live)) == "OK");
  CHECK(*f.count(live) == 2u);
  REQUIRE(outcome(f.del(live)) == "OK");
  CHECK(*f.get(live) == "A1");
  CHECK(outcome(f.store("A", live)) == ko(errc::nothing_to_store));
}

TEST_CASE("STORE through the registry delivers between users", "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto to_bob = f.session(alice, "bob");
  REQUIRE(outcome(to_bob) == "OK");
  REQUIRE(outcome(f.post(to_bob->user, "lunch at noon?")) == "OK");
  REQUIRE(outcome(f.store(to_bob->user, to_bob->mailbox)) == "OK");
  auto own = f.session(bob);
  REQUIRE(outcome(own) == "OK");
  CHECK(*f.count(own->mailbox) == 1u);
  CHECK(*f.get(own->mailbox) == "lunch at noon?");
  CHECK(outcome(f.store("alice", own->mailbox)) == ko(errc::nothing_to_store));
}

// -- hasher pool --------------------------------------------------------------

TEST_CASE("hasher returns verifiable hashes and verifies them", "[actors]") {
  fixture f;
  auto hash =
    ask<std::string>(f.self, f.hasher, hash_atom::value, std::string{"s3cret"});
  REQUIRE(outcome(hash) == "OK");
  CHECK(hash->rfind("$argon2id$", 0) == 0);
  CHECK(verify_password(*hash, "s3cret"));
  auto right = ask<bool>(f.self, f.hasher, verify_atom::value, *hash,
                         std::string{"s3cret"});
  REQUIRE(outcome(right) == "OK");
  CHECK(*right);
  auto wrong = ask<bool>(f.self, f.hasher, verify_atom::value, *hash,
                         std::string{"secret"});
  REQUIRE(outcome(wrong) == "OK");
  CHECK_FALSE(*wrong);
  auto garbage = ask<bool>(f.self, f.hasher, verify_atom::value,
                           std::string{"garbage"}, std::string{"s3cret"});
  REQUIRE(outcome(garbage) == "OK");
  CHECK_FALSE(*garbage);
}

TEST_CASE("a full hasher queue answers server_busy", "[actors]") {
  fixture f;
  auto pool = spawn_hasher(f.sys, hasher_config{pwhash_cost::min, 1, 2});
  constexpr int n = 10;
  using handle_type = decltype(f.self->request(
    pool, request_timeout, hash_atom::value, std::string{}));
  std::vector<handle_type> pending;
  for (int i = 0; i < n; ++i)
    pending.emplace_back(f.self->request(
      pool, request_timeout, hash_atom::value, "pw" + std::to_string(i)));
  int accepted = 0;
  int busy = 0;
  for (int i = 0; i < n; ++i)
    pending[i].receive(
      [&](std::string& hash) {
        INFO("request " << i);
        CHECK(verify_password(hash, "pw" + std::to_string(i)));
        CHECK_FALSE(verify_password(hash, "pw" + std::to_string(i + 1)));
        ++accepted;
      },
      [&](caf::error& err) {
        INFO("request " << i);
        CHECK(outcome_of(err) == ko(errc::server_busy));
        ++busy;
      });
  CHECK(accepted + busy == n);
  // One running and two queued are always accepted.
  CHECK(accepted >= 3);
  CHECK(busy >= 1);
  // Once the queue drained, the pool accepts work again.
  auto later =
    ask<std::string>(f.self, pool, hash_atom::value, std::string{"later"});
  REQUIRE(outcome(later) == "OK");
  CHECK(verify_password(*later, "later"));
  f.self->send_exit(pool, caf::exit_reason::user_shutdown);
}

// -- DUMP ---------------------------------------------------------------------

TEST_CASE("DUMP on the registry and the IMQ replies ok", "[actors]") {
  fixture f;
  // Empty first.
  CHECK(outcome(ask<caf::ok_atom>(f.self, f.registry, dump_atom::value)) ==
        "OK");
  CHECK(outcome(ask<caf::ok_atom>(f.self, f.imq, dump_atom::value)) == "OK");
  // Then with accounts, one of them with a mailbox, and queued messages.
  auto alice = f.must_register("alice", "s3cret");
  f.must_register("bob", "hunter22");
  auto s = f.session(alice);
  REQUIRE(outcome(s) == "OK");
  REQUIRE(outcome(f.put(s->mailbox, "kept")) == "OK");
  for (int i = 0; i < 15; ++i)
    REQUIRE(outcome(f.post("alice", "queued " + std::to_string(i))) == "OK");
  CHECK(outcome(ask<caf::ok_atom>(f.self, f.registry, dump_atom::value)) ==
        "OK");
  CHECK(outcome(ask<caf::ok_atom>(f.self, f.imq, dump_atom::value)) == "OK");
  // DUMP changes nothing.
  CHECK(*f.count(s->mailbox) == 1u);
  CHECK(outcome(f.session(alice)) == "OK");
  REQUIRE(outcome(f.store("alice", s->mailbox)) == "OK");
  CHECK(*f.get(s->mailbox) == "kept");
  CHECK(*f.count(s->mailbox) == 2u);
}
