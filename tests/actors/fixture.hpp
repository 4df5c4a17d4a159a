// Shared fixture of the actor tests: every actor on a real actor system.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "actors/messages.hpp"
#include "actors/spawn.hpp"
#include "actors/store/store.hpp"
#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/scoped_actor.hpp"
#include "tests/test_support.hpp"

struct sqlite3;

namespace smsp::testing {

// -- helpers ------------------------------------------------------------------

/// Every request gets an answer well within this, or the test fails (a hang
/// turns into a caf timeout error instead of a stuck binary).
constexpr auto request_timeout = std::chrono::seconds(5);

/// Cheap Argon2id for tests: the smallest cost, 2 workers, a long queue.
inline constexpr hasher_config fast_hasher{pwhash_cost::min, 2, 1024};

/// 32 lowercase hex characters.
bool is_cookie(const std::string& str);

/// The reply line a failed request would give, "OK" for a value, or a
/// description of a non-smsp error. Lets a check read
/// `CHECK(outcome(r) == ko(errc::user_exists))` and print well when it fails.
std::string outcome_of(const caf::error& err);

template <class T>
std::string outcome(const caf::expected<T>& result) {
  return result ? std::string{"OK"} : outcome_of(result.error());
}

std::string ko(errc code);

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

std::vector<std::string> texts_of(const std::vector<stored_mail>& mails);

/// Threads of the fixture's scheduler (caf's scheduler.max-threads).
constexpr size_t scheduler_threads = 2;

/// Keeps every thread of `sys`'s scheduler busy for as long as it lives (or
/// until resume()), so that no scheduled actor runs meanwhile: messages sent
/// then are all in their receivers' mailboxes before any of them is handled,
/// whatever the machine's speed. Detached actors (the store's threads, the
/// hash workers) and scoped actors run on; so does the test.
class scheduler_pause {
public:
  scheduler_pause(caf::actor_system& sys, size_t threads);
  scheduler_pause(const scheduler_pause&) = delete;
  scheduler_pause& operator=(const scheduler_pause&) = delete;
  ~scheduler_pause();
  void resume();

private:
  struct gate;
  std::shared_ptr<gate> gate_;
};

/// Holds the database's write lock from a connection of its own, as another
/// program could: the writer's next BEGIN waits for it (SQLite's busy
/// timeout, 5 s in the store) and fails when it is not released in time.
class write_lock {
public:
  explicit write_lock(const std::string& file);
  write_lock(const write_lock&) = delete;
  write_lock& operator=(const write_lock&) = delete;
  ~write_lock();
  void release();

private:
  sqlite3* db_ = nullptr;
};

/// The registry's mailbox figures (from its stats_atom reply).
struct registry_counts {
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
  /// DUMP at once, every time (the rate limit has tests of its own).
  dump_config dump = unlimited_dumps();
  /// Runs the IMQ, the registry and the mailboxes on CAF's I/O thread, as
  /// the server does (actor_host); otherwise on the scheduler, where
  /// scheduler_pause can hold them.
  bool on_io_thread = false;

  static dump_config unlimited_dumps() {
    dump_config cfg;
    cfg.min_interval = std::chrono::milliseconds{0};
    return cfg;
  }
};

// -- the fixture --------------------------------------------------------------

/// Owns a fresh data dir and an actor system with the whole set of actors
/// over it (writer, reader, IMQ, hasher, registry), plus a scoped actor that
/// talks to them. restart() stops them all and starts new ones on the same
/// data dir, as a server restart would. Every actor a test uses is spawned
/// here (start, spawn_mailbox, spawn_hasher), so that a change of a spawn
/// function touches this fixture only.
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
  dumper_actor dumper;
  registry_actor registry;
  /// The mailboxes spawned with spawn_mailbox, and their owners.
  std::vector<mailbox_actor> boxes;
  std::map<caf::actor_addr, std::string> box_owners;
  /// The last STORE ticket of mailbox_store (see expect_atom).
  uint64_t last_ticket = 0;

  explicit fixture(options o = {});

  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;

  ~fixture();

  /// Opens the data dir and spawns the actors over it, as the server does.
  void start();

  /// Stops the actors, those that send to the writer first and the writer
  /// last, each waited for; once the writer is down its store is closed.
  /// False when one did not stop in time.
  bool stop();

  void restart();

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

  bool wait_down(const caf::actor_addr& addr);

  std::string db_file() const;

  // -- the store as a new reader sees it ------------------------------------

  std::vector<std::string> stored_mailbox(const std::string& owner);

  std::vector<queued_message> stored_imq();

  // -- one request to one actor, waited for ---------------------------------

  /// Sends one request to the registry and waits up to `timeout` for its
  /// reply.
  template <class T, class... Ts>
  caf::expected<T> ask_registry_within(caf::duration timeout, Ts&&... xs) {
    return ask_within<T>(timeout, registry, std::forward<Ts>(xs)...);
  }

  template <class T, class... Ts>
  caf::expected<T> ask_registry(Ts&&... xs) {
    return ask<T>(registry, std::forward<Ts>(xs)...);
  }

  template <class T, class... Ts>
  caf::expected<T> ask_mailbox(const mailbox_actor& mb, Ts&&... xs) {
    return ask<T>(mb, std::forward<Ts>(xs)...);
  }

  template <class T, class... Ts>
  caf::expected<T> ask_imq(Ts&&... xs) {
    return ask<T>(imq, std::forward<Ts>(xs)...);
  }

  template <class T, class... Ts>
  caf::expected<T> ask_writer(Ts&&... xs) {
    return ask<T>(writer, std::forward<Ts>(xs)...);
  }

  /// Asks an actor of a mailbox node that a test runs beside the fixture
  /// (its host or reader; tests/actors/nodes_test.cpp).
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask_node(const Handle& dest, Ts&&... xs) {
    return ask<T>(dest, std::forward<Ts>(xs)...);
  }

  /// Asks `pool`: the fixture's hasher or one from spawn_hasher.
  template <class T, class... Ts>
  caf::expected<T> ask_hasher(const hasher_actor& pool, Ts&&... xs) {
    return ask<T>(pool, std::forward<Ts>(xs)...);
  }

  // -- registry: accounts and sessions --------------------------------------

  caf::expected<std::string> registry_register(const std::string& name,
                                               const std::string& password);

  /// Registers a user that must be accepted and returns the cookie.
  std::string registry_must_register(const std::string& name,
                                     const std::string& password = "secret");

  /// LOGIN from `address` (loopback: trusted, so only the username is
  /// throttled).
  caf::expected<std::string>
  registry_login(const std::string& name, const std::string& password,
                 const std::string& address = "127.0.0.1");

  caf::expected<caf::ok_atom> registry_logout(const std::string& cookie);

  registry_counts registry_stats();

  /// Runs the registry's passivation sweep (its caf::tick_atom, sent by
  /// hand) and returns its figures after it: the stats request is answered
  /// after the tick, as one sender's messages arrive in order.
  registry_counts registry_sweep();

  /// With `clock` as the registry's clock (options::registry.now): once the
  /// registry has routed every request sent so far, lets `idle` pass and
  /// runs the sweep; returns the figures after it. Requests the registry
  /// routed are stamped with the time before `idle`, however long the
  /// machine took: this is how a test passivates mailboxes at a chosen
  /// point, in between pipelined requests too.
  registry_counts registry_sweep_after(manual_clock& clock,
                                       std::chrono::milliseconds idle);

  caf::expected<caf::ok_atom> registry_dump();

  // -- registry: routed requests --------------------------------------------

  /// POST as the cookie's user.
  caf::expected<caf::ok_atom> registry_post(const std::string& cookie,
                                            const std::string& text);

  /// STORE the caller's most recent message into `target`'s mailbox.
  caf::expected<caf::ok_atom> registry_store(const std::string& cookie,
                                             const std::string& target);

  caf::expected<uint64_t> registry_count(const std::string& cookie,
                                         const std::string& owner);

  caf::expected<std::string> registry_get(const std::string& cookie,
                                          const std::string& owner);

  caf::expected<caf::ok_atom> registry_delete(const std::string& cookie,
                                              const std::string& owner);

  /// Reads and deletes every message of the caller's own mailbox, oldest
  /// first, through the registry.
  std::vector<std::string> registry_drain(const std::string& cookie,
                                          const std::string& owner);

  /// Checks through the registry's routed requests that `cookie` is a live
  /// session of `user`: COUNT on `user`'s mailbox is allowed, and a POST
  /// with the cookie is queued under `user` (a direct IMQ STORE for poster
  /// `user` finds that very text). Leaves the mailbox and the IMQ as they
  /// were.
  void expect_session(const std::string& cookie, const std::string& user);

  /// Checks that every request to the registry with `cookie` fails with
  /// not_logged_in, naming `user` as owner and target.
  void expect_not_logged_in(const std::string& cookie, const std::string& user);

  // -- mailbox (spawned directly, without the registry) ---------------------

  /// `owner`'s mailbox actor, stopped with the fixture.
  mailbox_actor spawn_mailbox(const std::string& owner,
                              mailbox_actor predecessor = {});

  /// Moves `poster`'s most recent IMQ message into `mb` (spawned with
  /// spawn_mailbox) as the registry does: announced to `mb`, then handed to
  /// the IMQ.
  caf::expected<caf::ok_atom> mailbox_store(const mailbox_actor& mb,
                                            const std::string& poster);

  /// Sends a request to the registry without waiting for its answer (a
  /// handle for await_reply). Requests sent one after another arrive in
  /// that order, as a connection's do.
  template <class... Ts>
  auto send_registry(Ts&&... xs) {
    return self->request(registry, request_timeout, std::forward<Ts>(xs)...);
  }

  /// Sends the STORE of mailbox_store without waiting for its answer (a
  /// handle for await_reply).
  auto send_mailbox_store(const mailbox_actor& mb, const std::string& poster) {
    auto ticket = ++last_ticket;
    caf::anon_send(mb, expect_atom::value, ticket);
    return self->request(imq, request_timeout, store_atom::value, poster,
                         box_owners.at(mb.address()), ticket, mb);
  }

  /// Posts `text` on the IMQ as "sender" and stores it into `mb`: mail
  /// reaches a mailbox only through the IMQ.
  caf::expected<caf::ok_atom> mailbox_deliver(const mailbox_actor& mb,
                                              const std::string& text);

  caf::expected<std::string> mailbox_get(const mailbox_actor& mb);

  caf::expected<caf::ok_atom> mailbox_delete(const mailbox_actor& mb);

  caf::expected<uint64_t> mailbox_count(const mailbox_actor& mb);

  caf::expected<caf::ok_atom> mailbox_retire(const mailbox_actor& mb);

  // -- IMQ ------------------------------------------------------------------

  caf::expected<caf::ok_atom> imq_post(const std::string& poster,
                                       const std::string& text);

  /// Moves `poster`'s most recent message into `owner`'s mailbox in the
  /// store, through a mailbox actor spawned for it and retired after.
  caf::expected<caf::ok_atom> imq_store(const std::string& poster,
                                        const std::string& owner);

  uint64_t imq_count();

  /// Whether the IMQ holds nothing storable for `poster` (checked with a
  /// direct STORE, which would take a message).
  bool imq_has_nothing_for(const std::string& poster);

  // -- writer ---------------------------------------------------------------

  /// (commits, writes) since the writer started.
  std::tuple<uint64_t, uint64_t> writer_stats();

  // -- hasher ---------------------------------------------------------------

  /// A hasher pool of its own beside the fixture's; the test stops it.
  hasher_actor spawn_hasher(const hasher_config& pool_cfg);

private:
  /// Sends one request and waits up to `timeout` for its reply.
  template <class T, class Handle, class... Ts>
  caf::expected<T>
  ask_within(caf::duration timeout, const Handle& dest, Ts&&... xs) {
    auto pending = self->request(dest, timeout, std::forward<Ts>(xs)...);
    return await_reply<T>(pending);
  }

  /// Sends one request and waits for its reply.
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dest, Ts&&... xs) {
    return ask_within<T>(caf::duration{request_timeout}, dest,
                         std::forward<Ts>(xs)...);
  }
};

} // namespace smsp::testing
