// Actor tests: every actor through its typed interface on a real actor system.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>
#include <unistd.h>

#include "actors/actors.hpp"
#include "actors/credentials.hpp"
#include "actors/messages.hpp"
#include "caf/all.hpp"

using namespace smsp;
using namespace std::string_literals;

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

/// The value of a request that must succeed.
template<class T>
T must(caf::expected<T> result) {
  REQUIRE(outcome(result) == "OK");
  return std::move(*result);
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

/// Waits for the reply to a request sent earlier, so that a test can send
/// several requests before it reads the first reply (pipelining).
template<class T, class Handle>
caf::expected<T> await_reply(Handle& pending) {
  std::optional<T> value;
  caf::error err;
  pending.receive([&](T x) { value = std::move(x); },
                  [&](caf::error& e) { err = std::move(e); });
  if (value)
    return std::move(*value);
  if (!err)
    err = caf::make_error(caf::sec::runtime_error, "no reply");
  return err;
}

/// Redirects file descriptor 2 (where log_line writes) into a temporary file
/// for as long as it lives.
class stderr_capture {
public:
  stderr_capture() {
    file_ = std::tmpfile();
    REQUIRE(file_ != nullptr);
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    REQUIRE(saved_ >= 0);
    REQUIRE(::dup2(::fileno(file_), STDERR_FILENO) >= 0);
  }

  stderr_capture(const stderr_capture&) = delete;
  stderr_capture& operator=(const stderr_capture&) = delete;

  ~stderr_capture() {
    restore();
    if (file_ != nullptr)
      std::fclose(file_);
  }

  /// Everything written to stderr so far.
  std::string text() const {
    std::string out;
    char buf[4096];
    off_t offset = 0;
    for (;;) {
      auto n = ::pread(::fileno(file_), buf, sizeof(buf), offset);
      if (n <= 0)
        break;
      out.append(buf, static_cast<size_t>(n));
      offset += n;
    }
    return out;
  }

  void restore() {
    if (saved_ < 0)
      return;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }

private:
  std::FILE* file_ = nullptr;
  int saved_ = -1;
};

/// Owns an actor system with a hasher, an IMQ and a registry that routes to
/// that IMQ, plus a scoped actor that talks to them.
struct fixture {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  hasher_actor hasher;
  imq_actor imq;
  registry_actor registry;

  fixture()
      : sys{cfg.set("scheduler.max-threads", 2)}
      , self{sys}
      , hasher{spawn_hasher(sys, fast_hasher)}
      , imq{spawn_imq(sys)}
      , registry{spawn_registry(sys, hasher, imq)} {
    REQUIRE(crypto_ready);
  }

  ~fixture() {
    self->send_exit(registry, caf::exit_reason::user_shutdown);
    self->send_exit(imq, caf::exit_reason::user_shutdown);
    self->send_exit(hasher, caf::exit_reason::user_shutdown);
  }

  // -- registry: accounts and sessions --------------------------------------

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

  // -- registry: routed requests --------------------------------------------

  /// POST as the cookie's user.
  caf::expected<caf::ok_atom> reg_post(const std::string& cookie,
                                       const std::string& text) {
    return ask<caf::ok_atom>(self, registry, post_atom::value, cookie, text);
  }

  /// STORE the caller's most recent message into `target`'s mailbox.
  caf::expected<caf::ok_atom> reg_store(const std::string& cookie,
                                        const std::string& target) {
    return ask<caf::ok_atom>(self, registry, store_atom::value, cookie, target);
  }

  caf::expected<uint64_t> reg_count(const std::string& cookie,
                                    const std::string& owner) {
    return ask<uint64_t>(self, registry, count_atom::value, cookie, owner);
  }

  caf::expected<std::string> reg_get(const std::string& cookie,
                                     const std::string& owner) {
    return ask<std::string>(self, registry, caf::get_atom::value, cookie,
                            owner);
  }

  caf::expected<caf::ok_atom> reg_del(const std::string& cookie,
                                      const std::string& owner) {
    return ask<caf::ok_atom>(self, registry, caf::delete_atom::value, cookie,
                             owner);
  }

  /// Reads and deletes every message of the caller's own mailbox, oldest
  /// first, through the registry.
  std::vector<std::string> drain(const std::string& cookie,
                                 const std::string& owner) {
    std::vector<std::string> texts;
    for (;;) {
      auto text = reg_get(cookie, owner);
      if (!text) {
        REQUIRE(outcome(text) == ko(errc::mailbox_empty));
        break;
      }
      texts.push_back(std::move(*text));
      REQUIRE(outcome(reg_del(cookie, owner)) == "OK");
      REQUIRE(texts.size() <= 10000u);
    }
    CHECK(must(reg_count(cookie, owner)) == 0u);
    return texts;
  }

  /// Checks through routed requests that `cookie` is a live session of
  /// `user`: COUNT on `user`'s mailbox is allowed, and a POST with the cookie
  /// is queued under `user` (a direct IMQ STORE for poster `user` finds that
  /// very text). Leaves the mailbox and the IMQ as they were.
  void expect_session(const std::string& cookie, const std::string& user) {
    INFO("expected a live session of " << user);
    auto before = reg_count(cookie, user);
    REQUIRE(outcome(before) == "OK");
    auto marker = "probe for " + user + " " + new_cookie();
    REQUIRE(outcome(reg_post(cookie, marker)) == "OK");
    auto probe = spawn_mailbox(sys, "probe");
    CHECK(outcome(store(user, probe)) == "OK");
    auto text = get(probe);
    CHECK(outcome(text) == "OK");
    if (text)
      CHECK(*text == marker);
    auto in_probe = count(probe);
    CHECK(outcome(in_probe) == "OK");
    if (in_probe)
      CHECK(*in_probe == 1u);
    self->send_exit(probe, caf::exit_reason::user_shutdown);
    auto after = reg_count(cookie, user);
    REQUIRE(outcome(after) == "OK");
    CHECK(*after == *before);
  }

  /// Checks that every routed request with `cookie` fails with
  /// not_logged_in, naming `user` as owner and target.
  void expect_not_logged_in(const std::string& cookie,
                            const std::string& user) {
    INFO("expected a dead cookie, user " << user);
    CHECK(outcome(reg_post(cookie, "from a dead cookie")) ==
          ko(errc::not_logged_in));
    CHECK(outcome(reg_store(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(reg_count(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(reg_get(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(reg_del(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(logout(cookie)) == ko(errc::not_logged_in));
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

  /// Whether the IMQ holds nothing storable for `poster` (checked with a
  /// direct STORE into a throwaway mailbox, which would take a message).
  bool nothing_queued_for(const std::string& poster) {
    auto probe = spawn_mailbox(sys, "probe");
    auto result = store(poster, probe);
    self->send_exit(probe, caf::exit_reason::user_shutdown);
    return outcome(result) == ko(errc::nothing_to_store);
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
  f.expect_session(*cookie, "alice");
  // The new account starts with an empty mailbox and nothing queued.
  CHECK(must(f.reg_count(*cookie, "alice")) == 0u);
  CHECK(outcome(f.reg_get(*cookie, "alice")) == ko(errc::mailbox_empty));
  CHECK(outcome(f.reg_store(*cookie, "alice")) == ko(errc::nothing_to_store));
}

TEST_CASE("REGISTER of an existing name fails with user_exists", "[actors]") {
  fixture f;
  auto first = f.must_register("alice", "s3cret");
  CHECK(outcome(f.register_user("alice", "s3cret")) == ko(errc::user_exists));
  CHECK(outcome(f.register_user("alice", "other")) == ko(errc::user_exists));
  // Names are case-sensitive.
  auto upper = f.register_user("Alice", "s3cret");
  REQUIRE(outcome(upper) == "OK");
  f.expect_session(*upper, "Alice");
  CHECK(outcome(f.reg_count(*upper, "alice")) == ko(errc::not_your_mailbox));
  // The failed attempts did not touch alice's session or password.
  f.expect_session(first, "alice");
  CHECK(outcome(f.reg_count(first, "Alice")) == ko(errc::not_your_mailbox));
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
  f.expect_session(*second, "alice");
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
  f.expect_session(cookie, "alice");
}

TEST_CASE("one live session per user: a new LOGIN ends the old cookie",
          "[actors]") {
  fixture f;
  auto first = f.must_register("alice", "s3cret");
  // Something in the mailbox so that GET and DELETE could succeed.
  REQUIRE(outcome(f.reg_post(first, "kept")) == "OK");
  REQUIRE(outcome(f.reg_store(first, "alice")) == "OK");
  REQUIRE(outcome(f.reg_post(first, "queued")) == "OK");
  auto second = f.login("alice", "s3cret");
  REQUIRE(outcome(second) == "OK");
  f.expect_not_logged_in(first, "alice");
  // The dead cookie neither deleted, nor stored, nor posted anything.
  CHECK(must(f.reg_count(*second, "alice")) == 1u);
  CHECK(must(f.reg_get(*second, "alice")) == "kept");
  REQUIRE(outcome(f.reg_store(*second, "alice")) == "OK");
  CHECK(f.drain(*second, "alice") ==
        std::vector<std::string>{"kept", "queued"});
  CHECK(f.nothing_queued_for("alice"));
  f.expect_session(*second, "alice");
  // And once more: the third cookie replaces the second.
  auto third = f.login("alice", "s3cret");
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
    auto cookie = f.must_register(name, "pw" + std::to_string(i));
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
  auto cookie = f.must_register("alice", "s3cret");
  CHECK(outcome(f.logout(cookie)) == "OK");
  f.expect_not_logged_in(cookie, "alice");
  CHECK(f.nothing_queued_for("alice"));
  CHECK(outcome(f.logout(cookie)) == ko(errc::not_logged_in));
  CHECK(outcome(f.logout("")) == ko(errc::not_logged_in));
  CHECK(outcome(f.logout(new_cookie())) == ko(errc::not_logged_in));
  // The account survives: LOGIN starts a new session.
  auto again = f.login("alice", "s3cret");
  REQUIRE(outcome(again) == "OK");
  f.expect_session(*again, "alice");
  f.expect_not_logged_in(cookie, "alice");
}

TEST_CASE("LOGOUT of one user leaves other sessions alone", "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  CHECK(outcome(f.logout(alice)) == "OK");
  f.expect_not_logged_in(alice, "alice");
  f.expect_session(bob, "bob");
}

// -- registry: routed requests ------------------------------------------------

TEST_CASE("routed requests act as the caller: POST then STORE to oneself "
          "then GET returns the text",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  CHECK(must(f.reg_count(alice, "alice")) == 0u);
  REQUIRE(outcome(f.reg_post(alice, "note to self")) == "OK");
  // The post is queued under alice: bob has nothing to store.
  CHECK(outcome(f.reg_store(bob, "bob")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  CHECK(must(f.reg_count(alice, "alice")) == 1u);
  CHECK(must(f.reg_get(alice, "alice")) == "note to self");
  // GET leaves the message; DELETE removes it.
  CHECK(must(f.reg_get(alice, "alice")) == "note to self");
  CHECK(must(f.reg_count(alice, "alice")) == 1u);
  REQUIRE(outcome(f.reg_del(alice, "alice")) == "OK");
  CHECK(must(f.reg_count(alice, "alice")) == 0u);
  CHECK(outcome(f.reg_get(alice, "alice")) == ko(errc::mailbox_empty));
  CHECK(outcome(f.reg_del(alice, "alice")) == ko(errc::mailbox_empty));
  CHECK(outcome(f.reg_store(alice, "alice")) == ko(errc::nothing_to_store));
  // Bob never got anything.
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
}

TEST_CASE("routed requests keep texts byte for byte", "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  const std::string texts[] = {
    "  inner   spacing  kept ",
    std::string{"nul\0inside", 10},
    "\xff\xfe binary \x01",
    std::string(16 * 1024, 'x'),
    std::string{},
  };
  for (auto& text : texts) {
    REQUIRE(outcome(f.reg_post(alice, text)) == "OK");
    REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  }
  CHECK(f.drain(alice, "alice") ==
        std::vector<std::string>(std::begin(texts), std::end(texts)));
}

TEST_CASE("unknown cookies get not_logged_in for every routed request",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
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
  CHECK(f.nothing_queued_for("alice"));
  CHECK(f.nothing_queued_for(""));
  f.expect_session(alice, "alice");
  CHECK(must(f.reg_count(alice, "alice")) == 0u);
}

TEST_CASE("COUNT GET and DELETE on another owner fail with not_your_mailbox",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  // Bob has mail, so a leak would show as a count or a text.
  REQUIRE(outcome(f.reg_post(bob, "private")) == "OK");
  REQUIRE(outcome(f.reg_store(bob, "bob")) == "OK");
  for (const std::string& owner :
       {std::string{"bob"}, std::string{"carol"}, std::string{"Alice"},
        std::string{"alice "}, std::string{}}) {
    INFO("owner: '" << owner << "'");
    CHECK(outcome(f.reg_count(alice, owner)) == ko(errc::not_your_mailbox));
    CHECK(outcome(f.reg_get(alice, owner)) == ko(errc::not_your_mailbox));
    CHECK(outcome(f.reg_del(alice, owner)) == ko(errc::not_your_mailbox));
  }
  // Also when the caller has mail and the other mailbox is empty.
  REQUIRE(outcome(f.reg_del(bob, "bob")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "mine")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  CHECK(outcome(f.reg_get(alice, "bob")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.reg_del(alice, "bob")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.reg_get(bob, "alice")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.reg_del(bob, "alice")) == ko(errc::not_your_mailbox));
  CHECK(outcome(f.reg_count(bob, "alice")) == ko(errc::not_your_mailbox));
  // Nothing was read from or deleted in the wrong mailbox.
  CHECK(must(f.reg_count(alice, "alice")) == 1u);
  CHECK(must(f.reg_get(alice, "alice")) == "mine");
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
  // The own name works for both.
  CHECK(outcome(f.reg_get(bob, "bob")) == ko(errc::mailbox_empty));
}

TEST_CASE("not_logged_in takes precedence over the other errors", "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(bob, "for bob")) == "OK");
  REQUIRE(outcome(f.reg_store(bob, "bob")) == "OK");
  REQUIRE(outcome(f.logout(alice)) == "OK");
  for (const std::string& dead : {alice, new_cookie(), std::string{}}) {
    for (const std::string& name : {std::string{"alice"}, std::string{"bob"},
                                    std::string{"carol"}, std::string{}}) {
      INFO("owner or target: '" << name << "'");
      // not_your_mailbox, no_such_user, nothing_to_store, mailbox_empty
      // would all apply otherwise.
      CHECK(outcome(f.reg_count(dead, name)) == ko(errc::not_logged_in));
      CHECK(outcome(f.reg_get(dead, name)) == ko(errc::not_logged_in));
      CHECK(outcome(f.reg_del(dead, name)) == ko(errc::not_logged_in));
      CHECK(outcome(f.reg_store(dead, name)) == ko(errc::not_logged_in));
    }
  }
  // Bob's mail is untouched.
  CHECK(must(f.reg_count(bob, "bob")) == 1u);
  CHECK(must(f.reg_get(bob, "bob")) == "for bob");
}

// -- registry: STORE ----------------------------------------------------------

TEST_CASE("STORE through the registry delivers to the named user and into "
          "the own mailbox",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "hi bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(must(f.reg_count(bob, "bob")) == 1u);
  CHECK(must(f.reg_get(bob, "bob")) == "hi bob");
  CHECK(must(f.reg_count(alice, "alice")) == 0u);
  // Bob answers.
  REQUIRE(outcome(f.reg_post(bob, "hi alice")) == "OK");
  REQUIRE(outcome(f.reg_store(bob, "alice")) == "OK");
  CHECK(must(f.reg_count(alice, "alice")) == 1u);
  CHECK(must(f.reg_get(alice, "alice")) == "hi alice");
  CHECK(must(f.reg_count(bob, "bob")) == 1u);
  // Storing into one's own mailbox appends behind what others sent.
  REQUIRE(outcome(f.reg_post(alice, "memo")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  CHECK(f.drain(alice, "alice") ==
        std::vector<std::string>{"hi alice", "memo"});
  CHECK(f.drain(bob, "bob") == std::vector<std::string>{"hi bob"});
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.reg_store(bob, "alice")) == ko(errc::nothing_to_store));
}

TEST_CASE("STORE through the registry to an unknown user fails and keeps "
          "the message",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "first")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "second")) == "OK");
  for (const std::string& target : {std::string{"carol"}, std::string{"Bob"},
                                    std::string{"bob "}, std::string{}}) {
    INFO("target: '" << target << "'");
    CHECK(outcome(f.reg_store(alice, target)) == ko(errc::no_such_user));
  }
  // no_such_user wins over nothing_to_store too.
  CHECK(outcome(f.reg_store(bob, "carol")) == ko(errc::no_such_user));
  // Both messages are still queued, the most recent first.
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.drain(bob, "bob") == std::vector<std::string>{"second", "first"});
  // A user registered later is a valid target from then on.
  REQUIRE(outcome(f.reg_post(alice, "welcome")) == "OK");
  CHECK(outcome(f.reg_store(alice, "carol")) == ko(errc::no_such_user));
  auto carol = f.must_register("carol", "pw");
  REQUIRE(outcome(f.reg_store(alice, "carol")) == "OK");
  CHECK(f.drain(carol, "carol") == std::vector<std::string>{"welcome"});
}

TEST_CASE("STORE through the registry with nothing posted fails with "
          "nothing_to_store",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.reg_store(alice, "alice")) == ko(errc::nothing_to_store));
  // Bob's posts are not alice's to store.
  REQUIRE(outcome(f.reg_post(bob, "from bob")) == "OK");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.reg_store(alice, "alice")) == ko(errc::nothing_to_store));
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
  CHECK(must(f.reg_count(alice, "alice")) == 0u);
  // Posting after a failed STORE works as usual.
  REQUIRE(outcome(f.reg_post(alice, "from alice")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.reg_store(bob, "alice")) == "OK");
  CHECK(f.drain(bob, "bob") == std::vector<std::string>{"from alice"});
  CHECK(f.drain(alice, "alice") == std::vector<std::string>{"from bob"});
}

TEST_CASE("STORE through the registry takes the most recent message first",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "A1")) == "OK");
  REQUIRE(outcome(f.reg_post(bob, "B1")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "A2")) == "OK");
  REQUIRE(outcome(f.reg_post(bob, "B2")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "A3")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(must(f.reg_get(bob, "bob")) == "A3");
  // A post between two STOREs is the new most recent one.
  REQUIRE(outcome(f.reg_post(alice, "A4")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.drain(bob, "bob") ==
        std::vector<std::string>{"A3", "A4", "A2", "A1"});
  // Bob's own posts waited all along.
  REQUIRE(outcome(f.reg_store(bob, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(bob, "alice")) == "OK");
  CHECK(outcome(f.reg_store(bob, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.drain(bob, "bob") == std::vector<std::string>{"B2"});
  CHECK(f.drain(alice, "alice") == std::vector<std::string>{"B1"});
}

TEST_CASE("a mailbox is the same before and after its owner logs in again",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob_first = f.must_register("bob", "hunter22");
  // alice stores into bob's mailbox first (bob never used it himself).
  REQUIRE(outcome(f.reg_post(alice, "early mail")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "second mail")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  auto bob = f.login("bob", "hunter22");
  REQUIRE(outcome(bob) == "OK");
  CHECK(must(f.reg_count(*bob, "bob")) == 2u);
  CHECK(must(f.reg_get(*bob, "bob")) == "early mail");
  // Mail bob stored for himself survives his next LOGIN and a LOGOUT too.
  REQUIRE(outcome(f.reg_post(*bob, "self note")) == "OK");
  REQUIRE(outcome(f.reg_store(*bob, "bob")) == "OK");
  REQUIRE(outcome(f.reg_del(*bob, "bob")) == "OK");
  REQUIRE(outcome(f.logout(*bob)) == "OK");
  auto again = f.login("bob", "hunter22");
  REQUIRE(outcome(again) == "OK");
  f.expect_not_logged_in(bob_first, "bob");
  f.expect_not_logged_in(*bob, "bob");
  CHECK(f.drain(*again, "bob") ==
        std::vector<std::string>{"second mail", "self note"});
  // alice's own empty mailbox was never confused with bob's.
  CHECK(must(f.reg_count(alice, "alice")) == 0u);
}

// -- registry: pipelining -----------------------------------------------------

TEST_CASE("pipelined requests from one client are answered in order",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto& self = f.self;
  auto& reg = f.registry;
  // Stage 1: POST POST STORE COUNT sent at once. The STORE sees both POSTs
  // and takes the second; the COUNT is on alice's own mailbox, which the
  // STORE does not touch.
  auto p1 =
    self->request(reg, request_timeout, post_atom::value, alice, "one"s);
  auto p2 =
    self->request(reg, request_timeout, post_atom::value, alice, "two"s);
  auto s1 =
    self->request(reg, request_timeout, store_atom::value, alice, "bob"s);
  auto c1 =
    self->request(reg, request_timeout, count_atom::value, alice, "alice"s);
  auto bad =
    self->request(reg, request_timeout, count_atom::value, alice, "bob"s);
  auto dead = self->request(reg, request_timeout, post_atom::value,
                            new_cookie(), "lost"s);
  auto s2 =
    self->request(reg, request_timeout, store_atom::value, alice, "alice"s);
  auto s3 =
    self->request(reg, request_timeout, store_atom::value, alice, "alice"s);
  CHECK(outcome(await_reply<caf::ok_atom>(p1)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(p2)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(s1)) == "OK");
  auto c1_value = await_reply<uint64_t>(c1);
  REQUIRE(outcome(c1_value) == "OK");
  CHECK(*c1_value == 0u);
  CHECK(outcome(await_reply<uint64_t>(bad)) == ko(errc::not_your_mailbox));
  CHECK(outcome(await_reply<caf::ok_atom>(dead)) == ko(errc::not_logged_in));
  CHECK(outcome(await_reply<caf::ok_atom>(s2)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(s3)) == ko(errc::nothing_to_store));
  // Stage 2, after the STOREs answered: reads and deletes sent at once.
  auto g1 =
    self->request(reg, request_timeout, caf::get_atom::value, bob, "bob"s);
  auto d1 =
    self->request(reg, request_timeout, caf::delete_atom::value, bob, "bob"s);
  auto g2 =
    self->request(reg, request_timeout, caf::get_atom::value, bob, "bob"s);
  auto d2 =
    self->request(reg, request_timeout, caf::delete_atom::value, bob, "bob"s);
  auto c2 = self->request(reg, request_timeout, count_atom::value, bob, "bob"s);
  auto g3 =
    self->request(reg, request_timeout, caf::get_atom::value, alice, "alice"s);
  auto c3 =
    self->request(reg, request_timeout, count_atom::value, alice, "alice"s);
  auto d3 = self->request(reg, request_timeout, caf::delete_atom::value, alice,
                          "alice"s);
  auto c4 =
    self->request(reg, request_timeout, count_atom::value, alice, "alice"s);
  auto g1_value = await_reply<std::string>(g1);
  REQUIRE(outcome(g1_value) == "OK");
  CHECK(*g1_value == "two");
  CHECK(outcome(await_reply<caf::ok_atom>(d1)) == "OK");
  CHECK(outcome(await_reply<std::string>(g2)) == ko(errc::mailbox_empty));
  CHECK(outcome(await_reply<caf::ok_atom>(d2)) == ko(errc::mailbox_empty));
  CHECK(must(await_reply<uint64_t>(c2)) == 0u);
  CHECK(must(await_reply<std::string>(g3)) == "one");
  CHECK(must(await_reply<uint64_t>(c3)) == 1u);
  CHECK(outcome(await_reply<caf::ok_atom>(d3)) == "OK");
  CHECK(must(await_reply<uint64_t>(c4)) == 0u);
}

TEST_CASE("long pipelines of POST then STORE then GET and DELETE keep order",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto& self = f.self;
  auto& reg = f.registry;
  constexpr int n = 50;
  using ok_handle = decltype(self->request(reg, request_timeout,
                                           post_atom::value, alice, "x"s));
  using text_handle = decltype(self->request(
    reg, request_timeout, caf::get_atom::value, bob, "bob"s));
  // n POSTs then n STOREs, all sent before the first reply is read.
  std::vector<ok_handle> posts;
  std::vector<ok_handle> stores;
  for (int i = 0; i < n; ++i)
    posts.emplace_back(self->request(reg, request_timeout, post_atom::value,
                                     alice, "m" + std::to_string(i)));
  for (int i = 0; i < n; ++i)
    stores.emplace_back(
      self->request(reg, request_timeout, store_atom::value, alice, "bob"s));
  auto extra =
    self->request(reg, request_timeout, store_atom::value, alice, "bob"s);
  for (auto& h : posts)
    CHECK(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  for (auto& h : stores)
    CHECK(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(extra)) ==
        ko(errc::nothing_to_store));
  // Then GET DELETE pairs and a final GET, all sent at once: each STORE
  // took the most recent message left, so bob reads m49 down to m0.
  std::vector<text_handle> gets;
  std::vector<ok_handle> dels;
  for (int i = 0; i <= n; ++i) {
    gets.emplace_back(
      self->request(reg, request_timeout, caf::get_atom::value, bob, "bob"s));
    if (i < n)
      dels.emplace_back(self->request(reg, request_timeout,
                                      caf::delete_atom::value, bob, "bob"s));
  }
  for (int i = 0; i <= n; ++i) {
    INFO("GET number " << i);
    auto text = await_reply<std::string>(gets[i]);
    if (i < n) {
      REQUIRE(outcome(text) == "OK");
      CHECK(*text == "m" + std::to_string(n - 1 - i));
      CHECK(outcome(await_reply<caf::ok_atom>(dels[i])) == "OK");
    } else {
      CHECK(outcome(text) == ko(errc::mailbox_empty));
    }
  }
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
}

TEST_CASE("concurrent clients posting and storing to one user lose nothing",
          "[actors]") {
  fixture f;
  auto bob = f.must_register("bob", "hunter22");
  constexpr int users = 8;
  constexpr int per_user = 5;
  std::vector<std::string> cookies;
  for (int u = 0; u < users; ++u)
    cookies.push_back(f.must_register("u" + std::to_string(u), "pw"));
  std::vector<std::unique_ptr<caf::scoped_actor>> clients;
  for (int u = 0; u < users; ++u)
    clients.emplace_back(std::make_unique<caf::scoped_actor>(f.sys));
  using ok_handle =
    decltype((*clients[0])
               ->request(f.registry, request_timeout, post_atom::value,
                         std::string{}, std::string{}));
  // Every client pipelines its POSTs then its STOREs to bob; all clients
  // send before any reply is read.
  std::vector<std::vector<ok_handle>> pending(users);
  for (int u = 0; u < users; ++u) {
    auto& client = *clients[u];
    for (int k = 0; k < per_user; ++k)
      pending[u].emplace_back(client->request(
        f.registry, request_timeout, post_atom::value, cookies[u],
        "u" + std::to_string(u) + "#" + std::to_string(k)));
    for (int k = 0; k < per_user; ++k)
      pending[u].emplace_back(client->request(
        f.registry, request_timeout, store_atom::value, cookies[u], "bob"s));
  }
  for (int u = 0; u < users; ++u)
    for (auto& h : pending[u]) {
      INFO("client " << u);
      CHECK(outcome(await_reply<caf::ok_atom>(h)) == "OK");
    }
  auto texts = f.drain(bob, "bob");
  CHECK(texts.size() == static_cast<size_t>(users * per_user));
  // Each user's messages arrive most recent first, whatever the interleaving.
  std::map<std::string, std::vector<std::string>> by_user;
  for (auto& text : texts)
    by_user[text.substr(0, text.find('#'))].push_back(text);
  CHECK(by_user.size() == static_cast<size_t>(users));
  for (int u = 0; u < users; ++u) {
    auto name = "u" + std::to_string(u);
    std::vector<std::string> expected;
    for (int k = per_user - 1; k >= 0; --k)
      expected.push_back(name + "#" + std::to_string(k));
    INFO("user " << name);
    CHECK(by_user[name] == expected);
    CHECK(f.nothing_queued_for(name));
  }
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
  REQUIRE(outcome(f.reg_post(alice, "lunch at noon?")) == "OK");
  // The registry queued it on the shared IMQ under alice's name.
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(must(f.reg_count(bob, "bob")) == 1u);
  CHECK(must(f.reg_get(bob, "bob")) == "lunch at noon?");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.nothing_queued_for("alice"));
  // A message posted directly on the IMQ under alice's name is hers to
  // store through the registry: the registry and the test share the IMQ.
  REQUIRE(outcome(f.post("alice", "via the imq")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(f.drain(bob, "bob") ==
        std::vector<std::string>{"lunch at noon?", "via the imq"});
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
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "kept")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  for (int i = 0; i < 15; ++i)
    REQUIRE(outcome(f.reg_post(alice, "queued " + std::to_string(i))) == "OK");
  CHECK(outcome(ask<caf::ok_atom>(f.self, f.registry, dump_atom::value)) ==
        "OK");
  CHECK(outcome(ask<caf::ok_atom>(f.self, f.imq, dump_atom::value)) == "OK");
  // DUMP changes nothing.
  CHECK(must(f.reg_count(alice, "alice")) == 1u);
  f.expect_session(alice, "alice");
  f.expect_session(bob, "bob");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  CHECK(must(f.reg_get(alice, "alice")) == "kept");
  CHECK(must(f.reg_count(alice, "alice")) == 2u);
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
}

TEST_CASE("DUMP through the registry makes the IMQ and every mailbox log",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  f.must_register("carol", "pw");
  REQUIRE(outcome(f.logout(bob)) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "kept")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  for (int i = 0; i < 12; ++i)
    REQUIRE(outcome(f.reg_post(alice, "queued " + std::to_string(i))) == "OK");
  std::string log;
  {
    stderr_capture capture;
    auto dumped = ask<caf::ok_atom>(f.self, f.registry, dump_atom::value);
    // The mailbox's DUMP is one-way; a COUNT routed after it through the
    // registry reaches the mailbox after it, so its line is written by now.
    auto counted = f.reg_count(alice, "alice");
    log = capture.text();
    capture.restore();
    CHECK(outcome(dumped) == "OK");
    CHECK(outcome(counted) == "OK");
  }
  INFO("log:\n" << log);
  CHECK(log.find("DUMP registry: 3 account(s), 2 live session(s)") !=
        std::string::npos);
  CHECK(log.find("DUMP imq: 12 message(s) [alice: queued 0]") !=
        std::string::npos);
  CHECK(log.find("DUMP mailbox alice: 1 message(s) [kept]") !=
        std::string::npos);
  CHECK(log.find("DUMP mailbox bob: 0 message(s)") != std::string::npos);
  CHECK(log.find("DUMP mailbox carol: 0 message(s)") != std::string::npos);
  // The IMQ line comes from the IMQ the registry routes to: alice's posts
  // are in it and nothing else.
  CHECK(log.find("queued 9]") != std::string::npos);
  CHECK(log.find("kept]") == log.rfind("kept]"));
}
