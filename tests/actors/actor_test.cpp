// Actor tests: every actor through its typed interface on a real actor system.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <sqlite3.h>
#include <sys/types.h>
#include <unistd.h>

#include "actors/logic/credentials.hpp"
#include "actors/messages.hpp"
#include "actors/spawn.hpp"
#include "actors/store/store.hpp"
#include "caf/all.hpp"
#include "tests/test_support.hpp"

using namespace smsp;
using smsp::testing::stderr_capture;
using smsp::testing::temp_dir;
using namespace std::string_literals;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

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

template <class T>
std::string outcome(const caf::expected<T>& result) {
  return result ? std::string{"OK"} : outcome_of(result.error());
}

std::string ko(errc code) {
  return error_reply(code);
}

/// The value of a request that must succeed.
template <class T>
T must(caf::expected<T> result) {
  REQUIRE(outcome(result) == "OK");
  return std::move(*result);
}

/// The handler that catches a reply of type T into an optional; replies of
/// several values arrive as a std::tuple.
template <class T>
struct reply_catcher {
  static auto make(std::optional<T>& out) {
    return [&out](T x) { out = std::move(x); };
  }
};

template <class... Ts>
struct reply_catcher<std::tuple<Ts...>> {
  static auto make(std::optional<std::tuple<Ts...>>& out) {
    return [&out](Ts... xs) { out = std::make_tuple(std::move(xs)...); };
  }
};

/// Waits for the reply to a request sent earlier, so that a test can send
/// several requests before it reads the first reply (pipelining).
template <class T, class Handle>
caf::expected<T> await_reply(Handle& pending) {
  std::optional<T> value;
  caf::error err;
  pending.receive(reply_catcher<T>::make(value),
                  [&](caf::error& e) { err = std::move(e); });
  if (value)
    return std::move(*value);
  if (!err)
    err = caf::make_error(caf::sec::runtime_error, "no reply");
  return err;
}

/// Sends one request and waits up to `timeout` for its reply.
template <class T, class Handle, class... Ts>
caf::expected<T> ask_within(caf::scoped_actor& self, caf::duration timeout,
                            const Handle& dest, Ts&&... xs) {
  auto pending = self->request(dest, timeout, std::forward<Ts>(xs)...);
  return await_reply<T>(pending);
}

/// Sends one request and waits for its reply.
template <class T, class Handle, class... Ts>
caf::expected<T> ask(caf::scoped_actor& self, const Handle& dest, Ts&&... xs) {
  return ask_within<T>(self, caf::duration{request_timeout}, dest,
                       std::forward<Ts>(xs)...);
}

/// Polls `done` every few milliseconds until it holds or `limit` passed.
bool wait_until(const std::function<bool()>& done,
                std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::vector<std::string> texts_of(const std::vector<stored_mail>& mails) {
  std::vector<std::string> result;
  for (auto& mail : mails)
    result.push_back(mail.text);
  return result;
}

/// Holds the database's write lock from a connection of its own, as another
/// program could: the writer's next BEGIN waits for it (SQLite's busy
/// timeout, 5 s in the store) and fails when it is not released in time.
class write_lock {
public:
  explicit write_lock(const std::string& file) {
    REQUIRE(sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr)
            == SQLITE_OK);
    REQUIRE(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr)
            == SQLITE_OK);
  }
  write_lock(const write_lock&) = delete;
  write_lock& operator=(const write_lock&) = delete;
  ~write_lock() {
    release();
  }
  void release() {
    if (db_ == nullptr)
      return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }

private:
  sqlite3* db_ = nullptr;
};

/// The registry's figures (stats_atom).
struct registry_stats {
  uint64_t active = 0;
  uint64_t activations = 0;
  uint64_t passivations = 0;
  uint64_t cached = 0;
};

/// How a fixture configures its actors; the data dir is always its own.
struct options {
  registry_config registry;
  /// Given to the IMQ and, through the registry, to the mailboxes.
  mail_limits mail;
  sync_mode sync = sync_mode::off;
  hasher_config hashing = fast_hasher;
};

/// Owns a fresh data dir and an actor system with the whole set of actors
/// over it (writer, reader, IMQ, hasher, registry), plus a scoped actor that
/// talks to them. restart() stops them all and starts new ones on the same
/// data dir, as a server restart would.
struct fixture {
  // Declared first, so removed last: after the actor system is gone.
  temp_dir dir;
  options opts;
  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  writer_actor writer;
  reader_actor reader;
  imq_actor imq;
  hasher_actor hasher;
  registry_actor registry;
  /// The mailboxes spawned with spawn_box.
  std::vector<mailbox_actor> boxes;

  explicit fixture(options o = {})
    : opts{std::move(o)}, sys{cfg.set("scheduler.max-threads", 2)}, self{sys} {
    REQUIRE(crypto_ready);
    try {
      start();
    } catch (...) {
      // The actor system's destructor waits for every actor: stop the ones
      // already running before the failure travels on.
      stop();
      throw;
    }
  }

  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  ~fixture() {
    stop();
  }

  /// Opens the data dir and spawns the actors over it, as the server does.
  void start() {
    auto db = store::open(dir.str(), opts.sync);
    auto queued = db.imq();
    writer = spawn_writer(sys, std::move(db));
    reader = spawn_reader(sys, dir.str());
    imq = spawn_imq(sys, writer, std::move(queued), opts.mail);
    hasher = spawn_hasher(sys, opts.hashing);
    auto reg_cfg = opts.registry;
    reg_cfg.mail = opts.mail;
    reg_cfg.data_dir = dir.str();
    registry = spawn_registry(sys, hasher, imq, writer, reader, reg_cfg);
  }

  /// Stops the actors, those that send to the writer first and the writer
  /// last, each waited for; once the writer is down its store is closed.
  /// False when one did not stop in time.
  bool stop() {
    // Mailboxes spawned by a test: a pending request timeout (their load's)
    // would keep them, and the actor system's shutdown, alive for seconds.
    bool ok = true;
    for (auto& mb : boxes)
      ok = stop_actor(mb) && ok;
    boxes.clear();
    ok = stop_actor(registry) && ok;
    ok = stop_actor(imq) && ok;
    ok = stop_actor(hasher) && ok;
    ok = stop_actor(reader) && ok;
    return stop_actor(writer) && ok;
  }

  void restart() {
    REQUIRE(stop());
    start();
  }

  /// Sends `handle` an exit and waits until it is down; clears the handle.
  template <class Handle>
  bool stop_actor(Handle& handle) {
    if (!handle)
      return true;
    auto addr = handle.address();
    self->monitor(handle);
    self->send_exit(handle, caf::exit_reason::user_shutdown);
    handle = Handle{};
    return wait_down(addr);
  }

  /// Kills `handle` (no exit handler runs) and waits until it is down.
  template <class Handle>
  void kill_and_wait(const Handle& handle) {
    self->monitor(handle);
    self->send_exit(handle, caf::exit_reason::kill);
    REQUIRE(wait_down(handle.address()));
  }

  bool wait_down(const caf::actor_addr& addr) {
    bool down = false;
    bool timed_out = false;
    while (!down && !timed_out)
      self->receive([&](caf::down_msg& msg) { down = msg.source == addr; },
                    caf::after(request_timeout) >> [&] { timed_out = true; });
    return down;
  }

  std::string db_file() const {
    return (dir.path / "smsp.db").string();
  }

  // -- the store as a new reader sees it ------------------------------------

  std::vector<std::string> stored_mailbox(const std::string& owner) {
    return texts_of(store::open_reader(dir.str()).mailbox(owner));
  }

  std::vector<queued_message> stored_imq() {
    return store::open_reader(dir.str()).imq();
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

  /// LOGIN from `address` (loopback: trusted, so only the username is
  /// throttled).
  caf::expected<std::string> login(const std::string& name,
                                   const std::string& password,
                                   const std::string& address = "127.0.0.1") {
    return ask<std::string>(self, registry, login_atom::value, name, password,
                            address);
  }

  caf::expected<caf::ok_atom> logout(const std::string& cookie) {
    return ask<caf::ok_atom>(self, registry, logout_atom::value, cookie);
  }

  registry_stats stats() {
    using figures = std::tuple<uint64_t, uint64_t, uint64_t, uint64_t>;
    auto [active, activations, passivations, cached]
      = must(ask<figures>(self, registry, stats_atom::value));
    return {active, activations, passivations, cached};
  }

  caf::expected<caf::ok_atom> dump() {
    return ask<caf::ok_atom>(self, registry, dump_atom::value);
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
    // Into a mailbox that is no account's, so no mailbox actor caches it.
    auto probed = imq_store(user, "probe");
    CHECK(outcome(probed) == "OK");
    if (probed)
      CHECK(probed->text == marker);
    auto after = reg_count(cookie, user);
    REQUIRE(outcome(after) == "OK");
    CHECK(*after == *before);
  }

  /// Checks that every routed request with `cookie` fails with
  /// not_logged_in, naming `user` as owner and target.
  void expect_not_logged_in(const std::string& cookie,
                            const std::string& user) {
    INFO("expected a dead cookie, user " << user);
    CHECK(outcome(reg_post(cookie, "from a dead cookie"))
          == ko(errc::not_logged_in));
    CHECK(outcome(reg_store(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(reg_count(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(reg_get(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(reg_del(cookie, user)) == ko(errc::not_logged_in));
    CHECK(outcome(logout(cookie)) == ko(errc::not_logged_in));
  }

  // -- mailbox (spawned directly, without the registry) ---------------------

  mailbox_actor spawn_box(const std::string& owner,
                          mailbox_actor predecessor = {}) {
    auto mb = spawn_mailbox(
      sys, owner, mailbox_deps{reader, imq, writer, timeouts{}, opts.mail},
      std::move(predecessor));
    boxes.push_back(mb);
    return mb;
  }

  /// Moves `poster`'s most recent IMQ message into `mb`.
  caf::expected<caf::ok_atom> box_store(const mailbox_actor& mb,
                                        const std::string& poster) {
    return ask<caf::ok_atom>(self, mb, store_atom::value, poster);
  }

  /// Posts `text` as "sender" and stores it into `mb`: mail reaches a
  /// mailbox only through the IMQ.
  caf::expected<caf::ok_atom> deliver(const mailbox_actor& mb,
                                      const std::string& text) {
    auto posted = post("sender", text);
    if (!posted)
      return posted.error();
    return box_store(mb, "sender");
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

  caf::expected<caf::ok_atom> retire(const mailbox_actor& mb) {
    return ask<caf::ok_atom>(self, mb, retire_atom::value);
  }

  // -- IMQ ------------------------------------------------------------------

  caf::expected<caf::ok_atom> post(const std::string& poster,
                                   const std::string& text) {
    return ask<caf::ok_atom>(self, imq, post_atom::value, poster, text);
  }

  /// Moves `poster`'s most recent message into `owner`'s mailbox in the
  /// store, bypassing any mailbox actor.
  caf::expected<stored_mail> imq_store(const std::string& poster,
                                       const std::string& owner) {
    using moved = std::tuple<uint64_t, std::string>;
    auto result = ask<moved>(self, imq, store_atom::value, poster, owner);
    if (!result)
      return result.error();
    return stored_mail{std::get<0>(*result), std::get<1>(*result)};
  }

  uint64_t imq_count() {
    return must(ask<uint64_t>(self, imq, count_atom::value));
  }

  /// Whether the IMQ holds nothing storable for `poster` (checked with a
  /// direct STORE, which would take a message).
  bool nothing_queued_for(const std::string& poster) {
    return outcome(imq_store(poster, "probe")) == ko(errc::nothing_to_store);
  }

  // -- writer ---------------------------------------------------------------

  /// (commits, writes) since the writer started.
  std::tuple<uint64_t, uint64_t> writer_stats() {
    return must(
      ask<std::tuple<uint64_t, uint64_t>>(self, writer, stats_atom::value));
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
      CHECK(outcome(f.register_user("bob", password))
            == ko(errc::bad_password));
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
  CHECK(outcome(f.login("carol", "pw" + std::to_string(winner))) == "OK");
  CHECK(outcome(f.login("carol", "pw" + std::to_string((winner + 1) % n)))
        == ko(errc::login_failed));
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
  CHECK(f.drain(*second, "alice")
        == std::vector<std::string>{"kept", "queued"});
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
  CHECK(f.drain(alice, "alice")
        == std::vector<std::string>(std::begin(texts), std::end(texts)));
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
  CHECK(f.drain(alice, "alice")
        == std::vector<std::string>{"hi alice", "memo"});
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
  CHECK(f.drain(bob, "bob")
        == std::vector<std::string>{"A3", "A4", "A2", "A1"});
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
  CHECK(f.drain(*again, "bob")
        == std::vector<std::string>{"second mail", "self note"});
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
  // STORE is a barrier: a connection sends nothing after it until it is
  // answered (its mailbox write comes back through the imq, which a later
  // request on another path could overtake). Everything up to a STORE is
  // pipelined.
  // Stage 1: POST POST STORE sent at once. The STORE sees both POSTs and
  // takes the second.
  auto p1 = self->request(reg, request_timeout, post_atom::value, alice,
                          "one"s);
  auto p2 = self->request(reg, request_timeout, post_atom::value, alice,
                          "two"s);
  auto s1 = self->request(reg, request_timeout, store_atom::value, alice,
                          "bob"s);
  CHECK(outcome(await_reply<caf::ok_atom>(p1)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(s1)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(p2)) == "OK");
  // Stage 2: the COUNT is on alice's own mailbox, which the STORE before
  // did not touch and the STORE after has not touched yet.
  auto c1 = self->request(reg, request_timeout, count_atom::value, alice,
                          "alice"s);
  auto bad = self->request(reg, request_timeout, count_atom::value, alice,
                           "bob"s);
  auto dead = self->request(reg, request_timeout, post_atom::value,
                            new_cookie(), "lost"s);
  auto s2 = self->request(reg, request_timeout, store_atom::value, alice,
                          "alice"s);
  CHECK(outcome(await_reply<caf::ok_atom>(s2)) == "OK");
  auto c1_value = await_reply<uint64_t>(c1);
  REQUIRE(outcome(c1_value) == "OK");
  CHECK(*c1_value == 0u);
  CHECK(outcome(await_reply<uint64_t>(bad)) == ko(errc::not_your_mailbox));
  CHECK(outcome(await_reply<caf::ok_atom>(dead)) == ko(errc::not_logged_in));
  CHECK(outcome(f.reg_store(alice, "alice")) == ko(errc::nothing_to_store));
  // Stage 3, after the STOREs answered: reads and deletes sent at once.
  auto g1 = self->request(reg, request_timeout, caf::get_atom::value, bob,
                          "bob"s);
  auto d1 = self->request(reg, request_timeout, caf::delete_atom::value, bob,
                          "bob"s);
  auto g2 = self->request(reg, request_timeout, caf::get_atom::value, bob,
                          "bob"s);
  auto d2 = self->request(reg, request_timeout, caf::delete_atom::value, bob,
                          "bob"s);
  auto c2 = self->request(reg, request_timeout, count_atom::value, bob, "bob"s);
  auto g3 = self->request(reg, request_timeout, caf::get_atom::value, alice,
                          "alice"s);
  auto c3 = self->request(reg, request_timeout, count_atom::value, alice,
                          "alice"s);
  auto d3 = self->request(reg, request_timeout, caf::delete_atom::value, alice,
                          "alice"s);
  auto c4 = self->request(reg, request_timeout, count_atom::value, alice,
                          "alice"s);
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
  // n POSTs then n STOREs, all sent before the first reply is read. A
  // connection would wait after each STORE (a barrier), but STOREs to one
  // target travel one path (registry, that mailbox, imq), so the actors keep
  // even this order.
  std::vector<ok_handle> posts;
  std::vector<ok_handle> stores;
  for (int i = 0; i < n; ++i)
    posts.emplace_back(self->request(reg, request_timeout, post_atom::value,
                                     alice, "m" + std::to_string(i)));
  for (int i = 0; i < n; ++i)
    stores.emplace_back(
      self->request(reg, request_timeout, store_atom::value, alice, "bob"s));
  auto extra = self->request(reg, request_timeout, store_atom::value, alice,
                             "bob"s);
  for (auto& h : posts)
    CHECK(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  for (auto& h : stores)
    CHECK(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(extra))
        == ko(errc::nothing_to_store));
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
  using ok_handle
    = decltype((*clients[0])
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
  // Every acknowledged STORE is committed: a new reader sees the same mail.
  auto stored = f.stored_mailbox("bob");
  auto texts = f.drain(bob, "bob");
  CHECK(texts.size() == static_cast<size_t>(users * per_user));
  CHECK(stored == texts);
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

TEST_CASE("mailbox keeps FIFO order over many STOREs", "[actors]") {
  fixture f;
  auto mb = f.spawn_box("alice");
  constexpr int n = 200;
  for (int i = 0; i < n; ++i)
    REQUIRE(outcome(f.deliver(mb, "message " + std::to_string(i))) == "OK");
  CHECK(must(f.count(mb)) == static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    auto text = f.get(mb);
    REQUIRE(outcome(text) == "OK");
    REQUIRE(*text == "message " + std::to_string(i));
    REQUIRE(outcome(f.del(mb)) == "OK");
    REQUIRE(must(f.count(mb)) == static_cast<uint64_t>(n - i - 1));
  }
  CHECK(outcome(f.get(mb)) == ko(errc::mailbox_empty));
  CHECK(f.stored_mailbox("alice").empty());
}

TEST_CASE("mailbox get leaves the message and delete removes the oldest",
          "[actors]") {
  fixture f;
  auto mb = f.spawn_box("alice");
  REQUIRE(outcome(f.deliver(mb, "first")) == "OK");
  REQUIRE(outcome(f.deliver(mb, "second")) == "OK");
  REQUIRE(outcome(f.deliver(mb, "third")) == "OK");
  CHECK(must(f.get(mb)) == "first");
  CHECK(must(f.get(mb)) == "first");
  CHECK(must(f.count(mb)) == 3u);
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(must(f.count(mb)) == 2u);
  CHECK(must(f.get(mb)) == "second");
  // Appending after a delete still goes to the end.
  REQUIRE(outcome(f.deliver(mb, "fourth")) == "OK");
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(must(f.get(mb)) == "third");
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(must(f.get(mb)) == "fourth");
  CHECK(must(f.count(mb)) == 1u);
  // Every acknowledged change is in the store already.
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"fourth"});
}

TEST_CASE("mailbox keeps texts byte for byte also through the store",
          "[actors]") {
  fixture f;
  auto mb = f.spawn_box("alice");
  const std::vector<std::string> texts = {
    "  inner   spacing  kept ",
    std::string{"nul\0inside", 10},
    "\xff\xfe binary \x01",
    std::string(16 * 1024, 'x'),
    std::string{},
  };
  for (auto& text : texts)
    REQUIRE(outcome(f.deliver(mb, text)) == "OK");
  CHECK(f.stored_mailbox("alice") == texts);
  // A new mailbox actor loads the same bytes back from the store.
  REQUIRE(outcome(f.retire(mb)) == "OK");
  auto again = f.spawn_box("alice");
  for (auto& text : texts) {
    auto got = f.get(again);
    REQUIRE(outcome(got) == "OK");
    CHECK(*got == text);
    REQUIRE(outcome(f.del(again)) == "OK");
  }
  CHECK(outcome(f.get(again)) == ko(errc::mailbox_empty));
}

TEST_CASE("empty mailbox: get and delete fail with mailbox_empty", "[actors]") {
  fixture f;
  auto mb = f.spawn_box("alice");
  CHECK(must(f.count(mb)) == 0u);
  CHECK(outcome(f.get(mb)) == ko(errc::mailbox_empty));
  CHECK(outcome(f.del(mb)) == ko(errc::mailbox_empty));
  REQUIRE(outcome(f.deliver(mb, "only")) == "OK");
  REQUIRE(outcome(f.del(mb)) == "OK");
  CHECK(must(f.count(mb)) == 0u);
  CHECK(outcome(f.get(mb)) == ko(errc::mailbox_empty));
  CHECK(outcome(f.del(mb)) == ko(errc::mailbox_empty));
}

TEST_CASE("mailbox STORE with nothing queued fails and changes nothing",
          "[actors]") {
  fixture f;
  auto mb = f.spawn_box("alice");
  REQUIRE(outcome(f.deliver(mb, "kept")) == "OK");
  CHECK(outcome(f.box_store(mb, "sender")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.box_store(mb, "nobody")) == ko(errc::nothing_to_store));
  CHECK(must(f.count(mb)) == 1u);
  CHECK(must(f.get(mb)) == "kept");
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"kept"});
}

TEST_CASE("a mailbox loads its owner's committed mail when spawned",
          "[actors]") {
  fixture f;
  // Mail moved in the store without any mailbox actor running.
  REQUIRE(outcome(f.post("bob", "one")) == "OK");
  REQUIRE(outcome(f.imq_store("bob", "alice")) == "OK");
  REQUIRE(outcome(f.post("bob", "two")) == "OK");
  REQUIRE(outcome(f.imq_store("bob", "alice")) == "OK");
  REQUIRE(outcome(f.post("bob", "elsewhere")) == "OK");
  REQUIRE(outcome(f.imq_store("bob", "carol")) == "OK");
  auto mb = f.spawn_box("alice");
  // Requests sent right away wait for the load: none sees an empty box.
  auto counted = f.self->request(mb, request_timeout, count_atom::value);
  auto first = f.self->request(mb, request_timeout, caf::get_atom::value);
  CHECK(must(await_reply<uint64_t>(counted)) == 2u);
  CHECK(must(await_reply<std::string>(first)) == "one");
  REQUIRE(outcome(f.del(mb)) == "OK");
  REQUIRE(outcome(f.deliver(mb, "three")) == "OK");
  f.kill_and_wait(mb);
  // Killed, not retired: its acknowledged writes are committed anyway.
  auto next = f.spawn_box("alice");
  CHECK(must(f.count(next)) == 2u);
  CHECK(must(f.get(next)) == "two");
  REQUIRE(outcome(f.del(next)) == "OK");
  CHECK(must(f.get(next)) == "three");
  CHECK(f.stored_mailbox("carol") == std::vector<std::string>{"elsewhere"});
}

TEST_CASE("a retiring mailbox answers after its writes and its successor "
          "loads them",
          "[actors]") {
  fixture f;
  auto old = f.spawn_box("alice");
  REQUIRE(outcome(f.deliver(old, "a")) == "OK");
  REQUIRE(outcome(f.deliver(old, "b")) == "OK");
  REQUIRE(outcome(f.post("sender", "c")) == "OK");
  // STORE and DELMSG under way when the retirement and the successor come
  // (their commits held back by a lock): the successor must see both, or it
  // would show "a" again or miss "c".
  auto& self = f.self;
  write_lock lock{f.db_file()};
  auto stored = self->request(old, request_timeout, store_atom::value,
                              "sender"s);
  auto deleted = self->request(old, request_timeout, caf::delete_atom::value);
  auto retired = self->request(old, request_timeout, retire_atom::value);
  auto next = f.spawn_box("alice", old);
  auto counted = self->request(next, request_timeout, count_atom::value);
  auto first = self->request(next, request_timeout, caf::get_atom::value);
  // Time for a successor that does not wait to load and answer too early.
  std::this_thread::sleep_for(50ms);
  lock.release();
  CHECK(outcome(await_reply<caf::ok_atom>(stored)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(deleted)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(retired)) == "OK");
  CHECK(must(await_reply<uint64_t>(counted)) == 2u);
  CHECK(must(await_reply<std::string>(first)) == "b");
  // The retired mailbox is gone.
  CHECK_FALSE(f.count(old));
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"b", "c"});
}

// -- IMQ and STORE ------------------------------------------------------------

TEST_CASE("IMQ STORE takes the most recent message of its own poster only",
          "[actors]") {
  fixture f;
  REQUIRE(outcome(f.post("A", "A1")) == "OK");
  REQUIRE(outcome(f.post("B", "B1")) == "OK");
  REQUIRE(outcome(f.post("A", "A2")) == "OK");
  REQUIRE(outcome(f.post("B", "B2")) == "OK");
  CHECK(f.imq_count() == 4u);

  auto first = f.imq_store("A", "target1");
  REQUIRE(outcome(first) == "OK");
  CHECK(first->text == "A2");
  auto second = f.imq_store("A", "target1");
  REQUIRE(outcome(second) == "OK");
  CHECK(second->text == "A1");
  // Mail ids follow the order of the moves, so a mailbox's FIFO is by id.
  CHECK(first->id < second->id);
  CHECK(outcome(f.imq_store("A", "target1")) == ko(errc::nothing_to_store));
  CHECK(f.imq_count() == 2u);
  CHECK(f.stored_mailbox("target1") == std::vector<std::string>{"A2", "A1"});

  // B's messages were waiting all along.
  auto b2 = f.imq_store("B", "target2");
  REQUIRE(outcome(b2) == "OK");
  CHECK(b2->text == "B2");
  auto b1 = f.imq_store("B", "target2");
  REQUIRE(outcome(b1) == "OK");
  CHECK(b1->text == "B1");
  CHECK(outcome(f.imq_store("B", "target2")) == ko(errc::nothing_to_store));
  CHECK(f.imq_count() == 0u);
  CHECK(f.stored_imq().empty());
  // A mailbox actor of the target loads what the IMQ moved.
  auto mb = f.spawn_box("target2");
  CHECK(must(f.count(mb)) == 2u);
  CHECK(must(f.get(mb)) == "B2");
}

TEST_CASE("IMQ STORE with nothing posted fails with nothing_to_store",
          "[actors]") {
  fixture f;
  CHECK(outcome(f.imq_store("A", "target")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.post("B", "B1")) == "OK");
  CHECK(outcome(f.imq_store("A", "target")) == ko(errc::nothing_to_store));
  CHECK(outcome(f.imq_store("", "target")) == ko(errc::nothing_to_store));
  CHECK(f.stored_mailbox("target").empty());
  // Posting after a failed STORE works as usual.
  REQUIRE(outcome(f.post("A", "A1")) == "OK");
  auto moved = f.imq_store("A", "target");
  REQUIRE(outcome(moved) == "OK");
  CHECK(moved->text == "A1");
  CHECK(f.imq_count() == 1u);
}

TEST_CASE("IMQ posts are in the store in order before they are "
          "acknowledged",
          "[actors]") {
  fixture f;
  REQUIRE(outcome(f.post("A", "A1")) == "OK");
  REQUIRE(outcome(f.post("B", "B1")) == "OK");
  REQUIRE(outcome(f.post("A", "A2")) == "OK");
  auto queued = f.stored_imq();
  REQUIRE(queued.size() == 3u);
  CHECK(queued[0].poster == "A");
  CHECK(queued[1].poster == "B");
  CHECK(queued[2].poster == "A");
  CHECK(queued[0].id < queued[1].id);
  CHECK(queued[1].id < queued[2].id);
}

TEST_CASE("a STORE whose commit fails keeps the message on the IMQ",
          "[actors]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "first")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "second")) == "OK");
  // Bob's mailbox is active and loaded before the database gets locked.
  REQUIRE(must(f.reg_count(bob, "bob")) == 0u);
  std::string log;
  caf::expected<caf::ok_atom> failed{caf::ok_atom::value};
  {
    stderr_capture capture;
    // Another connection holds the write lock past the store's busy
    // timeout: the writer's transaction for this STORE cannot start.
    write_lock lock{f.db_file()};
    failed = ask_within<caf::ok_atom>(f.self, caf::duration{30s}, f.registry,
                                      store_atom::value, alice, "bob"s);
    lock.release();
    log = capture.text();
  }
  INFO("log:\n" << log);
  CHECK(outcome(failed) == ko(errc::storage_failed));
  CHECK(log.find("store: write failed") != std::string::npos);
  // Nothing of it happened: bob has no mail, the IMQ still has both.
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
  CHECK(f.imq_count() == 2u);
  CHECK(f.stored_mailbox("bob").empty());
  CHECK(f.stored_imq().size() == 2u);
  // The message is back at its old place: the next STOREs deliver "second"
  // (the most recent), then "first", each exactly once.
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"second", "first"});
  CHECK(f.stored_imq().empty());
  CHECK(f.drain(bob, "bob") == std::vector<std::string>{"second", "first"});
}

TEST_CASE("a STORE while the writer is gone fails and loses nothing",
          "[actors][durability]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "first")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "second")) == "OK");
  REQUIRE(must(f.reg_count(bob, "bob")) == 0u);
  // The writer dies between two requests, as if it had crashed.
  f.kill_and_wait(f.writer);
  CHECK_FALSE(f.reg_store(alice, "bob"));
  CHECK_FALSE(f.reg_store(alice, "bob"));
  CHECK_FALSE(f.reg_post(alice, "never acknowledged"));
  // In memory nothing moved: bob has no mail, both messages are queued.
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
  CHECK(f.imq_count() == 2u);
  // After a restart both are still there and storable, newest first.
  f.restart();
  auto alice2 = must(f.login("alice", "s3cret"));
  auto bob2 = must(f.login("bob", "hunter22"));
  CHECK(f.imq_count() == 2u);
  REQUIRE(outcome(f.reg_store(alice2, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice2, "bob")) == "OK");
  CHECK(outcome(f.reg_store(alice2, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.drain(bob2, "bob") == std::vector<std::string>{"second", "first"});
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
  CHECK(f.drain(bob, "bob")
        == std::vector<std::string>{"lunch at noon?", "via the imq"});
}

// -- hasher pool --------------------------------------------------------------

TEST_CASE("hasher returns verifiable hashes and verifies them", "[actors]") {
  fixture f;
  auto hash = ask<std::string>(f.self, f.hasher, hash_atom::value,
                               std::string{"s3cret"});
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
  auto later = ask<std::string>(f.self, pool, hash_atom::value,
                                std::string{"later"});
  REQUIRE(outcome(later) == "OK");
  CHECK(verify_password(*later, "later"));
  f.self->send_exit(pool, caf::exit_reason::user_shutdown);
}

// -- DUMP ---------------------------------------------------------------------

TEST_CASE("DUMP on the registry replies ok and changes nothing", "[actors]") {
  fixture f;
  // Empty first.
  CHECK(outcome(f.dump()) == "OK");
  // Then with accounts, one of them with a mailbox, and queued messages.
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  REQUIRE(outcome(f.reg_post(alice, "kept")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  for (int i = 0; i < 15; ++i)
    REQUIRE(outcome(f.reg_post(alice, "queued " + std::to_string(i))) == "OK");
  auto before = f.stats();
  CHECK(outcome(f.dump()) == "OK");
  // DUMP changes nothing: no mailbox activated, nothing moved.
  auto after = f.stats();
  CHECK(after.active == before.active);
  CHECK(after.activations == before.activations);
  CHECK(f.imq_count() == 15u);
  CHECK(must(f.reg_count(alice, "alice")) == 1u);
  f.expect_session(alice, "alice");
  f.expect_session(bob, "bob");
  REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
  CHECK(must(f.reg_get(alice, "alice")) == "kept");
  CHECK(must(f.reg_count(alice, "alice")) == 2u);
  CHECK(must(f.reg_count(bob, "bob")) == 0u);
}

TEST_CASE("DUMP through the registry logs its figures and the IMQ and every "
          "mailbox",
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
  caf::expected<caf::ok_atom> dumped{caf::ok_atom::value};
  {
    stderr_capture capture;
    // The helper answers after it logged, so its lines are written by now.
    dumped = f.dump();
    log = capture.text();
  }
  INFO("log:\n" << log);
  CHECK(outcome(dumped) == "OK");
  CHECK(log.find("DUMP registry: 2 live session(s), 1 active mailbox(es) "
                 "(1 activated, 0 passivated), 3 cached account(s)")
        != std::string::npos);
  CHECK(log.find("DUMP imq: 12 message(s) [alice: queued 0] [alice: queued 1]")
        != std::string::npos);
  CHECK(log.find("DUMP mailbox alice: 1 message(s) [kept]")
        != std::string::npos);
  CHECK(log.find("DUMP mailbox bob: 0 message(s)") != std::string::npos);
  CHECK(log.find("DUMP mailbox carol: 0 message(s)") != std::string::npos);
  // At most the first 10 texts of a queue, so a large one cannot stall it.
  CHECK(log.find("queued 9]") != std::string::npos);
  CHECK(log.find("queued 10]") == std::string::npos);
  CHECK(log.find("kept]") == log.rfind("kept]"));
}

TEST_CASE("DUMP after passivation lists every mailbox from the store",
          "[actors][passivation]") {
  options opts;
  opts.registry.mailbox_idle = 100ms;
  fixture f{opts};
  constexpr int n = 5;
  std::vector<std::string> cookies;
  for (int u = 0; u < n; ++u)
    cookies.push_back(f.must_register("u" + std::to_string(u), "pw"));
  // uK gets K messages, so every count differs; u0 is never touched.
  for (int u = 1; u < n; ++u)
    for (int k = 0; k < u; ++k) {
      auto text = "for u" + std::to_string(u) + " #" + std::to_string(k);
      REQUIRE(outcome(f.reg_post(cookies[u], text)) == "OK");
      REQUIRE(outcome(f.reg_store(cookies[u], "u" + std::to_string(u)))
              == "OK");
    }
  REQUIRE(wait_until([&] { return f.stats().active == 0; }));
  auto before = f.stats();
  REQUIRE(before.passivations == before.activations);
  std::string log;
  caf::expected<caf::ok_atom> dumped{caf::ok_atom::value};
  {
    stderr_capture capture;
    dumped = f.dump();
    log = capture.text();
  }
  INFO("log:\n" << log);
  CHECK(outcome(dumped) == "OK");
  // Four mailboxes were touched; a slow machine may have passivated one
  // between two of its STOREs, so the figures come from the stats.
  CHECK(before.activations >= static_cast<uint64_t>(n - 1));
  CHECK(log.find("DUMP registry: 5 live session(s), 0 active mailbox(es) ("
                 + std::to_string(before.activations) + " activated, "
                 + std::to_string(before.passivations)
                 + " passivated), 5 cached account(s)")
        != std::string::npos);
  CHECK(log.find("DUMP imq: 0 message(s)") != std::string::npos);
  CHECK(log.find("DUMP mailbox u0: 0 message(s)") != std::string::npos);
  CHECK(log.find("DUMP mailbox u1: 1 message(s) [for u1 #0]")
        != std::string::npos);
  CHECK(log.find("DUMP mailbox u2: 2 message(s) [for u2 #0] [for u2 #1]")
        != std::string::npos);
  CHECK(log.find("DUMP mailbox u3: 3 message(s) [for u3 #0] [for u3 #1] "
                 "[for u3 #2]")
        != std::string::npos);
  CHECK(log.find("DUMP mailbox u4: 4 message(s) [for u4 #0]")
        != std::string::npos);
  // DUMP read the store: it woke no mailbox.
  auto after = f.stats();
  CHECK(after.active == 0u);
  CHECK(after.activations == before.activations);
}

// -- the store writer ---------------------------------------------------------

TEST_CASE("the writer commits concurrent writes in groups and acknowledges "
          "only committed writes",
          "[actors][store]") {
  // fsync at every commit: the writes that arrive meanwhile wait, so they
  // must share the next commit.
  options opts;
  opts.sync = sync_mode::full;
  fixture f{opts};
  constexpr int clients = 8;
  constexpr int posts = 40;
  constexpr int moves = 20;
  constexpr int deletes = 5;
  auto poster = [](int c) { return "p" + std::to_string(c); };
  auto owner = [](int c) { return "o" + std::to_string(c); };
  auto text = [](int c, int i) {
    return "p" + std::to_string(c) + "#" + std::to_string(i);
  };
  // What each client saw; checked on the test's thread (Catch2 assertions
  // are not thread-safe).
  struct seen {
    std::vector<uint64_t> imq_ids;
    std::vector<stored_mail> moved;
    std::vector<std::string> failures;
  };
  std::vector<seen> results(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      caf::scoped_actor self{f.sys};
      auto& out = results[c];
      auto fail = [&](const caf::error& err) {
        out.failures.push_back(outcome_of(err));
      };
      // What an acknowledgement promises: the write is committed, so a new
      // connection sees it at once (the other clients touch other rows).
      auto check_visible = [&](const char* stage, size_t deleted) {
        try {
          auto db = store::open_reader(f.dir.str());
          std::set<uint64_t> queued, mailed;
          for (auto& msg : db.imq())
            if (msg.poster == poster(c))
              queued.insert(msg.id);
          for (auto& mail : db.mailbox(owner(c)))
            mailed.insert(mail.id);
          std::set<uint64_t> want_queued(out.imq_ids.begin() + out.moved.size(),
                                         out.imq_ids.end());
          std::set<uint64_t> want_mailed;
          for (size_t i = deleted; i < out.moved.size(); ++i)
            want_mailed.insert(out.moved[i].id);
          if (queued != want_queued || mailed != want_mailed)
            out.failures.push_back(std::string{"acknowledged "} + stage
                                   + " not in the store");
        } catch (const store_error& err) {
          out.failures.push_back(err.what());
        }
      };
      // Each stage is pipelined: all its requests before the first reply.
      using post_handle
        = decltype(self->request(f.writer, request_timeout, post_atom::value,
                                 std::string{}, std::string{}));
      std::vector<post_handle> pending_posts;
      for (int i = 0; i < posts; ++i)
        pending_posts.emplace_back(self->request(
          f.writer, request_timeout, post_atom::value, poster(c), text(c, i)));
      for (auto& h : pending_posts) {
        auto id = await_reply<uint64_t>(h);
        if (id)
          out.imq_ids.push_back(*id);
        else
          fail(id.error());
      }
      if (out.imq_ids.size() != static_cast<size_t>(posts))
        return;
      check_visible("posts", 0);
      using move_handle
        = decltype(self->request(f.writer, request_timeout, move_atom::value,
                                 uint64_t{0}, std::string{}));
      std::vector<move_handle> pending_moves;
      for (int i = 0; i < moves; ++i)
        pending_moves.emplace_back(self->request(f.writer, request_timeout,
                                                 move_atom::value,
                                                 out.imq_ids[i], owner(c)));
      for (auto& h : pending_moves) {
        auto mail = await_reply<std::tuple<uint64_t, std::string>>(h);
        if (mail)
          out.moved.push_back({std::get<0>(*mail), std::get<1>(*mail)});
        else
          fail(mail.error());
      }
      if (out.moved.size() != static_cast<size_t>(moves))
        return;
      check_visible("moves", 0);
      using delete_handle = decltype(self->request(
        f.writer, request_timeout, caf::delete_atom::value, uint64_t{0}));
      std::vector<delete_handle> pending_deletes;
      for (int i = 0; i < deletes; ++i)
        pending_deletes.emplace_back(self->request(
          f.writer, request_timeout, caf::delete_atom::value, out.moved[i].id));
      for (auto& h : pending_deletes) {
        auto done = await_reply<caf::ok_atom>(h);
        if (!done)
          fail(done.error());
      }
      check_visible("deletes", deletes);
    });
  for (auto& t : threads)
    t.join();
  std::set<uint64_t> all_ids;
  for (int c = 0; c < clients; ++c) {
    INFO("client " << c);
    auto& out = results[c];
    CHECK(out.failures == std::vector<std::string>{});
    REQUIRE(out.imq_ids.size() == static_cast<size_t>(posts));
    REQUIRE(out.moved.size() == static_cast<size_t>(moves));
    // One client's posts are committed in the order it sent them.
    CHECK(std::is_sorted(out.imq_ids.begin(), out.imq_ids.end()));
    all_ids.insert(out.imq_ids.begin(), out.imq_ids.end());
    for (int i = 0; i < moves; ++i)
      CHECK(out.moved[i].text == text(c, i));
  }
  CHECK(all_ids.size() == static_cast<size_t>(clients * posts));
  auto [commits, writes] = f.writer_stats();
  INFO(writes << " writes in " << commits << " commits");
  CHECK(writes == static_cast<uint64_t>(clients * (posts + moves + deletes)));
  // Several writes per commit on average, not one commit each.
  CHECK(commits > 0u);
  CHECK(commits * 2 <= writes);
  // Every acknowledged write is in the store, seen by a new connection.
  auto reader = store::open_reader(f.dir.str());
  std::map<std::string, std::vector<uint64_t>> queued;
  for (auto& msg : reader.imq())
    queued[msg.poster].push_back(msg.id);
  CHECK(queued.size() == static_cast<size_t>(clients));
  for (int c = 0; c < clients; ++c) {
    INFO("client " << c);
    auto& out = results[c];
    std::vector<uint64_t> unmoved(out.imq_ids.begin() + moves,
                                  out.imq_ids.end());
    CHECK(queued[poster(c)] == unmoved);
    std::vector<std::string> kept;
    for (int i = deletes; i < moves; ++i)
      kept.push_back(text(c, i));
    CHECK(texts_of(reader.mailbox(owner(c))) == kept);
  }
}

// -- durability ---------------------------------------------------------------

TEST_CASE("accounts and mailboxes and the IMQ survive a restart but "
          "sessions do not",
          "[actors][durability]") {
  fixture f;
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto carol = f.must_register("carol", "pw");
  for (auto text : {"a1", "a2", "a3", "a4"})
    REQUIRE(outcome(f.reg_post(alice, text)) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");   // a4
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");   // a3
  REQUIRE(outcome(f.reg_store(alice, "carol")) == "OK"); // a2
  REQUIRE(outcome(f.reg_post(alice, "a5")) == "OK");
  REQUIRE(outcome(f.reg_post(bob, "b1")) == "OK");
  REQUIRE(outcome(f.reg_store(bob, "bob")) == "OK");
  REQUIRE(outcome(f.reg_del(bob, "bob")) == "OK"); // a4
  REQUIRE(outcome(f.reg_post(carol, "c1")) == "OK");
  // Left: bob [a3 b1], carol [a2], queued a1 a5 (alice) and c1 (carol).
  REQUIRE(f.imq_count() == 3u);

  f.restart();

  CHECK(f.imq_count() == 3u);
  auto fresh = f.stats();
  CHECK(fresh.active == 0u);
  CHECK(fresh.cached == 0u);
  // Sessions are not durable.
  f.expect_not_logged_in(alice, "alice");
  f.expect_not_logged_in(bob, "bob");
  f.expect_not_logged_in(carol, "carol");
  // Accounts are, with their passwords.
  CHECK(outcome(f.register_user("alice", "other")) == ko(errc::user_exists));
  CHECK(outcome(f.login("alice", "other")) == ko(errc::login_failed));
  CHECK(outcome(f.login("dave", "pw")) == ko(errc::login_failed));
  auto alice2 = must(f.login("alice", "s3cret"));
  auto bob2 = must(f.login("bob", "hunter22"));
  auto carol2 = must(f.login("carol", "pw"));
  // Mailboxes hold exactly the committed messages, in order.
  CHECK(must(f.reg_count(bob2, "bob")) == 2u);
  CHECK(must(f.reg_get(bob2, "bob")) == "a3");
  CHECK(must(f.reg_count(carol2, "carol")) == 1u);
  CHECK(must(f.reg_count(alice2, "alice")) == 0u);
  // The IMQ still has the unstored ones: STORE takes the most recent first.
  REQUIRE(outcome(f.reg_store(alice2, "alice")) == "OK");
  REQUIRE(outcome(f.reg_store(alice2, "alice")) == "OK");
  CHECK(outcome(f.reg_store(alice2, "alice")) == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.reg_store(carol2, "bob")) == "OK");
  CHECK(f.imq_count() == 0u);
  CHECK(f.drain(alice2, "alice") == std::vector<std::string>{"a5", "a1"});
  CHECK(f.drain(bob2, "bob") == std::vector<std::string>{"a3", "b1", "c1"});
  // New mail after the restart goes behind the old.
  REQUIRE(outcome(f.reg_post(bob2, "b2")) == "OK");
  REQUIRE(outcome(f.reg_store(bob2, "carol")) == "OK");

  // Once more: the deletes and the new mail are durable too.
  f.restart();
  auto alice3 = must(f.login("alice", "s3cret"));
  auto bob3 = must(f.login("bob", "hunter22"));
  auto carol3 = must(f.login("carol", "pw"));
  f.expect_not_logged_in(alice2, "alice");
  CHECK(f.imq_count() == 0u);
  CHECK(must(f.reg_count(alice3, "alice")) == 0u);
  CHECK(must(f.reg_count(bob3, "bob")) == 0u);
  CHECK(f.drain(carol3, "carol") == std::vector<std::string>{"a2", "b2"});
}

// -- passivation --------------------------------------------------------------

TEST_CASE("idle mailboxes are passivated and load their mail on the next "
          "request",
          "[actors][passivation]") {
  options opts;
  opts.registry.mailbox_idle = 300ms;
  fixture f{opts};
  constexpr uint64_t n = 50;
  auto name = [](uint64_t u) { return "u" + std::to_string(u); };
  auto text = [](uint64_t u) { return "mail of u" + std::to_string(u); };
  std::vector<std::string> cookies;
  for (uint64_t u = 0; u < n; ++u)
    cookies.push_back(f.must_register(name(u), "pw"));
  auto& self = f.self;
  using ok_handle
    = decltype(self->request(f.registry, request_timeout, post_atom::value,
                             std::string{}, std::string{}));
  // Posting touches no mailbox; each user's STORE activates its own one.
  std::vector<ok_handle> pending;
  for (uint64_t u = 0; u < n; ++u)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       post_atom::value, cookies[u], text(u)));
  for (auto& h : pending)
    REQUIRE(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  pending.clear();
  auto started = std::chrono::steady_clock::now();
  for (uint64_t u = 0; u < n; ++u)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       store_atom::value, cookies[u], name(u)));
  for (auto& h : pending)
    REQUIRE(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  auto touched = f.stats();
  auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(touched.activations == n);
  CHECK(touched.active + touched.passivations == n);
  // All 50 are active unless this machine took longer than the idle time.
  if (elapsed < opts.registry.mailbox_idle)
    CHECK(touched.active == n);
  // Past the idle time every one of them stops.
  REQUIRE(wait_until([&] { return f.stats().active == 0; }));
  auto idle = f.stats();
  CHECK(idle.passivations == n);
  CHECK(idle.activations == n);
  for (uint64_t u = 0; u < n; ++u)
    CHECK(f.stored_mailbox(name(u)) == std::vector<std::string>{text(u)});
  // The next requests find the mail intact.
  using count_handle
    = decltype(self->request(f.registry, request_timeout, count_atom::value,
                             std::string{}, std::string{}));
  using text_handle
    = decltype(self->request(f.registry, request_timeout, caf::get_atom::value,
                             std::string{}, std::string{}));
  std::vector<count_handle> counts;
  std::vector<text_handle> texts;
  for (uint64_t u = 0; u < n; ++u) {
    counts.emplace_back(self->request(f.registry, request_timeout,
                                      count_atom::value, cookies[u], name(u)));
    texts.emplace_back(self->request(
      f.registry, request_timeout, caf::get_atom::value, cookies[u], name(u)));
  }
  for (uint64_t u = 0; u < n; ++u) {
    INFO("user " << name(u));
    CHECK(must(await_reply<uint64_t>(counts[u])) == 1u);
    CHECK(must(await_reply<std::string>(texts[u])) == text(u));
  }
  auto woken = f.stats();
  CHECK(woken.activations >= 2 * n);
  CHECK(woken.activations == woken.active + woken.passivations);
}

TEST_CASE("requests racing passivations lose and duplicate no message",
          "[actors][passivation]") {
  // Retired after 20 ms without requests (swept every 10 ms): the mailbox
  // stops and starts again many times during the test.
  options opts;
  opts.registry.mailbox_idle = 20ms;
  fixture f{opts};
  auto alice = f.must_register("alice", "s3cret");
  auto& self = f.self;
  auto& reg = f.registry;
  std::deque<std::string> model;
  auto check_model = [&](int round) {
    INFO("round " << round);
    auto counted = self->request(reg, request_timeout, count_atom::value, alice,
                                 "alice"s);
    auto first = self->request(reg, request_timeout, caf::get_atom::value,
                               alice, "alice"s);
    CHECK(must(await_reply<uint64_t>(counted)) == model.size());
    auto text = await_reply<std::string>(first);
    if (model.empty())
      CHECK(outcome(text) == ko(errc::mailbox_empty));
    else
      CHECK(must(text) == model.front());
  };
  std::minstd_rand rng{42};
  std::uniform_int_distribution<int> pause_ms{0, 45};
  constexpr int rounds = 100;
  for (int round = 0; round < rounds; ++round) {
    INFO("round " << round);
    auto text = "m" + std::to_string(round);
    REQUIRE(outcome(f.reg_post(alice, text)) == "OK");
    if (round % 10 == 4 || round % 10 == 9) {
      // A write under way while the mailbox is passivated and a request
      // activates its successor: the write's commit is held back by a
      // lock, so the successor must wait for it before loading.
      bool storing = round % 10 == 4;
      write_lock lock{f.db_file()};
      auto write = storing
                     ? self->request(reg, request_timeout, store_atom::value,
                                     alice, "alice"s)
                     : self->request(reg, request_timeout,
                                     caf::delete_atom::value, alice, "alice"s);
      // Counted after the write reached the registry: a later passivation
      // is of the mailbox that has this write under way.
      auto before = f.stats().passivations;
      REQUIRE(wait_until([&] { return f.stats().passivations > before; }, 2s));
      auto counted = self->request(reg, request_timeout, count_atom::value,
                                   alice, "alice"s);
      auto first = self->request(reg, request_timeout, caf::get_atom::value,
                                 alice, "alice"s);
      std::this_thread::sleep_for(10ms);
      lock.release();
      REQUIRE(outcome(await_reply<caf::ok_atom>(write)) == "OK");
      if (storing)
        model.push_back(text);
      else
        model.pop_front();
      CHECK(must(await_reply<uint64_t>(counted)) == model.size());
      CHECK(must(await_reply<std::string>(first)) == model.front());
      if (!storing) {
        // The message posted this round is still queued: store it now.
        REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
        model.push_back(text);
      }
    } else {
      // STORE is a barrier (the connection waits for its reply); the
      // reads and deletes behind it are pipelined.
      REQUIRE(outcome(f.reg_store(alice, "alice")) == "OK");
      model.push_back(text);
      check_model(round);
      if (round % 3 == 2) {
        auto first = self->request(reg, request_timeout, caf::get_atom::value,
                                   alice, "alice"s);
        auto deleted = self->request(reg, request_timeout,
                                     caf::delete_atom::value, alice, "alice"s);
        CHECK(must(await_reply<std::string>(first)) == model.front());
        CHECK(outcome(await_reply<caf::ok_atom>(deleted)) == "OK");
        model.pop_front();
        check_model(round);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{pause_ms(rng)});
  }
  auto figures = f.stats();
  INFO(figures.passivations << " passivations");
  // The race did happen, many times.
  CHECK(figures.passivations >= 20u);
  CHECK(figures.activations == figures.active + figures.passivations);
  std::vector<std::string> expected(model.begin(), model.end());
  CHECK(f.stored_mailbox("alice") == expected);
  CHECK(f.imq_count() == 0u);
  CHECK(f.drain(alice, "alice") == expected);
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
    f.must_register(name(u), password(u));
  auto figures = f.stats();
  CHECK(figures.cached > 0u);
  CHECK(figures.cached <= 5u);
  // u0 left the cache long ago: its name is still taken.
  CHECK(outcome(f.register_user(name(0), "other")) == ko(errc::user_exists));
  std::vector<std::string> cookies;
  for (int u = 0; u < n; ++u) {
    INFO("user " << name(u));
    CHECK(outcome(f.login(name(u), password(u) + "x"))
          == ko(errc::login_failed));
    CHECK(outcome(f.login(name(u), password((u + 1) % n)))
          == ko(errc::login_failed));
    cookies.push_back(must(f.login(name(u), password(u))));
  }
  CHECK(f.stats().cached <= 5u);
  // STORE to users out of the cache finds them in the store; unknown
  // names stay unknown.
  REQUIRE(outcome(f.reg_post(cookies[19], "hello u3")) == "OK");
  REQUIRE(outcome(f.reg_post(cookies[19], "hello u4")) == "OK");
  CHECK(outcome(f.reg_store(cookies[19], "nobody")) == ko(errc::no_such_user));
  REQUIRE(outcome(f.reg_store(cookies[19], name(4))) == "OK");
  REQUIRE(outcome(f.reg_store(cookies[19], name(3))) == "OK");
  CHECK(f.stats().cached <= 5u);
  CHECK(f.drain(cookies[3], name(3)) == std::vector<std::string>{"hello u3"});
  CHECK(f.drain(cookies[4], name(4)) == std::vector<std::string>{"hello u4"});
}

// -- limits -------------------------------------------------------------------

TEST_CASE("a full mailbox refuses STORE and the message stays on the IMQ",
          "[actors][limits]") {
  options opts;
  opts.mail.max_mailbox = 3;
  fixture f{opts};
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto carol = f.must_register("carol", "pw");
  for (auto text : {"m1", "m2", "m3", "m4"})
    REQUIRE(outcome(f.reg_post(alice, text)) == "OK");
  for (int i = 0; i < 3; ++i)
    REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(outcome(f.reg_store(alice, "bob")) == ko(errc::mailbox_full));
  CHECK(f.imq_count() == 1u);
  CHECK(f.stored_imq().size() == 1u);
  CHECK(must(f.reg_count(bob, "bob")) == 3u);
  // Other mailboxes are not full.
  REQUIRE(outcome(f.reg_post(bob, "b1")) == "OK");
  REQUIRE(outcome(f.reg_store(bob, "carol")) == "OK");
  // Once bob made room, the same message goes in.
  REQUIRE(outcome(f.reg_del(bob, "bob")) == "OK");
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  CHECK(f.nothing_queued_for("alice"));
  CHECK(f.drain(bob, "bob") == std::vector<std::string>{"m3", "m2", "m1"});
  // STOREs under way count: of five pipelined, three fit.
  for (auto text : {"p1", "p2", "p3", "p4", "p5"})
    REQUIRE(outcome(f.reg_post(alice, text)) == "OK");
  auto& self = f.self;
  using ok_handle
    = decltype(self->request(f.registry, request_timeout, store_atom::value,
                             std::string{}, std::string{}));
  std::vector<ok_handle> pending;
  for (int i = 0; i < 5; ++i)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       store_atom::value, alice, "bob"s));
  for (int i = 0; i < 5; ++i) {
    INFO("STORE " << i);
    auto result = await_reply<caf::ok_atom>(pending[i]);
    CHECK(outcome(result) == (i < 3 ? "OK" : ko(errc::mailbox_full)));
  }
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"p5", "p4", "p3"});
  CHECK(f.imq_count() == 2u);
  CHECK(f.drain(carol, "carol") == std::vector<std::string>{"b1"});
}

TEST_CASE("too many unstored messages of one poster are refused while "
          "others post on",
          "[actors][limits]") {
  options opts;
  opts.mail.max_imq_per_user = 2;
  fixture f{opts};
  auto alice = f.must_register("alice", "s3cret");
  auto bob = f.must_register("bob", "hunter22");
  auto carol = f.must_register("carol", "pw");
  REQUIRE(outcome(f.reg_post(alice, "x1")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "x2")) == "OK");
  CHECK(outcome(f.reg_post(alice, "x3")) == ko(errc::too_many_unstored));
  // Another poster is not affected.
  REQUIRE(outcome(f.reg_post(bob, "y1")) == "OK");
  REQUIRE(outcome(f.reg_post(bob, "y2")) == "OK");
  CHECK(outcome(f.reg_post(bob, "y3")) == ko(errc::too_many_unstored));
  // The refused post was not queued; a STORE makes room for one more.
  REQUIRE(outcome(f.reg_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.reg_post(alice, "x4")) == "OK");
  CHECK(outcome(f.reg_post(alice, "x5")) == ko(errc::too_many_unstored));
  CHECK(f.imq_count() == 4u);
  CHECK(must(f.reg_get(bob, "bob")) == "x2");
  // Posts under way count: of three pipelined, two are accepted.
  auto& self = f.self;
  using ok_handle
    = decltype(self->request(f.registry, request_timeout, post_atom::value,
                             std::string{}, std::string{}));
  std::vector<ok_handle> pending;
  for (int i = 0; i < 3; ++i)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       post_atom::value, carol,
                                       "z" + std::to_string(i)));
  for (int i = 0; i < 3; ++i) {
    INFO("POST " << i);
    auto result = await_reply<caf::ok_atom>(pending[i]);
    CHECK(outcome(result) == (i < 2 ? "OK" : ko(errc::too_many_unstored)));
  }
  // The limit holds for the queue loaded from the store after a restart.
  f.restart();
  auto bob2 = must(f.login("bob", "hunter22"));
  CHECK(outcome(f.reg_post(bob2, "y4")) == ko(errc::too_many_unstored));
  auto alice2 = must(f.login("alice", "s3cret"));
  REQUIRE(outcome(f.reg_store(alice2, "alice")) == "OK");
  REQUIRE(outcome(f.reg_store(alice2, "alice")) == "OK");
  CHECK(outcome(f.reg_store(alice2, "alice")) == ko(errc::nothing_to_store));
  CHECK(f.drain(alice2, "alice") == std::vector<std::string>{"x4", "x1"});
  CHECK(f.stored_imq().size() == 4u); // y1 y2 z0 z1
}

// -- brute-force throttling ---------------------------------------------------

namespace {

/// Windows of 200 ms doubling to 800 ms: the policy of the defaults (1 s to
/// 15 s), scaled down so that the tests wait for real windows briefly.
options throttled() {
  options opts;
  opts.registry.throttle.first_penalty = std::chrono::milliseconds{200};
  opts.registry.throttle.max_penalty = std::chrono::milliseconds{800};
  return opts;
}

} // namespace

TEST_CASE("after 3 failed LOGINs the right password is refused like a wrong "
          "one until the window ends",
          "[actors][throttle]") {
  fixture f{throttled()};
  f.must_register("alice", "right");
  for (int i = 0; i < 3; ++i)
    CHECK(outcome(f.login("alice", "wrong")) == ko(errc::login_failed));
  auto refused_at = std::chrono::steady_clock::now();
  CHECK(outcome(f.login("alice", "right")) == ko(errc::login_failed));
  // Refusals do not extend the window: keep trying, the right password
  // gets in once 200 ms after the third failure have passed.
  std::string result;
  do {
    result = outcome(f.login("alice", "right"));
  } while (result != "OK"
           && std::chrono::steady_clock::now() - refused_at
                < std::chrono::seconds{5});
  auto waited = std::chrono::steady_clock::now() - refused_at;
  CHECK(result == "OK");
  CHECK(waited < std::chrono::milliseconds{600});
  // The success reset the count: one more failure is free again.
  CHECK(outcome(f.login("alice", "wrong")) == ko(errc::login_failed));
  CHECK(outcome(f.login("alice", "right")) == "OK");
}

TEST_CASE("a penalized LOGIN is answered without hashing",
          "[actors][throttle]") {
  // The registry's one hash worker at the real cost: a hashed LOGIN takes
  // tens of milliseconds, so 20 of them could not come back quickly.
  auto opts = throttled();
  opts.hashing = hasher_config{pwhash_cost::interactive, 1, 8};
  fixture f{opts};
  f.must_register("bob", "right");
  for (int i = 0; i < 3; ++i)
    CHECK(outcome(f.login("bob", "wrong")) == ko(errc::login_failed));
  auto hashed_start = std::chrono::steady_clock::now();
  CHECK(outcome(f.login("nobody", "wrong")) == ko(errc::login_failed));
  auto one_hash = std::chrono::steady_clock::now() - hashed_start;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i)
    CHECK(outcome(f.login("bob", "right")) == ko(errc::login_failed));
  auto refusals = std::chrono::steady_clock::now() - start;
  INFO(
    "one hashed LOGIN: "
    << std::chrono::duration_cast<std::chrono::milliseconds>(one_hash).count()
    << " ms, 20 refusals: "
    << std::chrono::duration_cast<std::chrono::milliseconds>(refusals).count()
    << " ms");
  CHECK(refusals < std::chrono::milliseconds{150});
  CHECK(refusals < one_hash);
}

TEST_CASE("an untrusted address is penalized across usernames but trusted ones "
          "are not",
          "[actors][throttle]") {
  fixture f{throttled()};
  for (auto name : {"u1", "u2", "u3", "u4"})
    f.must_register(name, "right");
  // Three users, one failure each, from one outside address.
  for (auto name : {"u1", "u2", "u3"})
    CHECK(outcome(f.login(name, "wrong", "203.0.113.9"))
          == ko(errc::login_failed));
  CHECK(outcome(f.login("u4", "right", "203.0.113.9"))
        == ko(errc::login_failed));
  // Another address, and loopback, are not affected.
  CHECK(outcome(f.login("u4", "right", "198.51.100.7")) == "OK");
  for (auto name : {"u1", "u2", "u3"})
    CHECK(outcome(f.login(name, "wrong", "127.0.0.1"))
          == ko(errc::login_failed));
  CHECK(outcome(f.login("u4", "right", "127.0.0.2")) == "OK");
}
