// The actor tests' fixture and helpers, compiled once for every unit's tests.
#include "tests/actors/fixture.hpp"

#include <condition_variable>
#include <mutex>

#include <sqlite3.h>

#include "actors/io_thread.hpp"
#include "actors/logic/credentials.hpp"
#include "caf/all.hpp"
#include "caf/io/middleman.hpp"
#include "net/wire/replies.hpp"

using namespace std::chrono_literals;

namespace smsp::testing {

namespace {

/// libsodium must be initialized once before cookies or hashes.
const bool crypto_ready = init_crypto();

bool is_lower_hex(const std::string& str) {
  for (char c : str)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

} // namespace

// -- helpers ------------------------------------------------------------------

bool is_cookie(const std::string& str) {
  return str.size() == 32 && is_lower_hex(str);
}

std::string outcome_of(const caf::error& err) {
  if (!err)
    return "OK";
  if (err.category() == error_category)
    return std::string{reply::failure(static_cast<errc>(err.code()))};
  return "caf error: " + caf::to_string(err);
}

std::string ko(errc code) {
  return std::string{reply::failure(code)};
}

std::vector<std::string> texts_of(const std::vector<stored_mail>& mails) {
  std::vector<std::string> result;
  for (auto& mail : mails)
    result.push_back(mail.text);
  return result;
}

struct scheduler_pause::gate {
  std::mutex mtx;
  std::condition_variable cv;
  size_t blocked = 0;
  bool open = false;
};

scheduler_pause::scheduler_pause(caf::actor_system& sys, size_t threads)
  : gate_(std::make_shared<gate>()) {
  for (size_t i = 0; i < threads; ++i)
    sys.spawn([g = gate_](caf::event_based_actor*) {
      // Blocks the scheduler thread that runs this actor's start.
      std::unique_lock<std::mutex> guard{g->mtx};
      ++g->blocked;
      g->cv.notify_all();
      g->cv.wait(guard, [&] { return g->open; });
    });
  // Each blocker holds its thread: once all have started, every thread is
  // held (an idle thread steals a blocker queued behind a held one).
  std::unique_lock<std::mutex> guard{gate_->mtx};
  auto all_held = gate_->cv.wait_for(guard, std::chrono::seconds{30},
                                     [&] { return gate_->blocked == threads; });
  guard.unlock();
  if (!all_held) {
    resume();
    FAIL("the scheduler's threads were not all held within 30 s");
  }
}

scheduler_pause::~scheduler_pause() {
  resume();
}

void scheduler_pause::resume() {
  std::lock_guard<std::mutex> guard{gate_->mtx};
  gate_->open = true;
  gate_->cv.notify_all();
}

write_lock::write_lock(const std::string& file) {
  REQUIRE(sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr)
          == SQLITE_OK);
  REQUIRE(sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr)
          == SQLITE_OK);
}

write_lock::~write_lock() {
  release();
}

void write_lock::release() {
  if (db_ == nullptr)
    return;
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db_);
  db_ = nullptr;
}

// -- the fixture --------------------------------------------------------------

fixture::fixture(options o)
  : opts{std::move(o)},
    sys{cfg.set("scheduler.max-threads", scheduler_threads)
          .load<caf::io::middleman>()},
    self{sys} {
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

fixture::~fixture() {
  stop();
}

void fixture::start() {
  auto db = store::open(dir.str(), opts.sync);
  auto queued = db.imq();
  auto claimed = db.claimed_moves();
  writer = spawn_writer(sys, std::move(db));
  reader = spawn_reader(sys, dir.str());
  auto host = opts.on_io_thread ? io_thread_of(sys) : nullptr;
  imq = spawn_imq(sys, writer, std::move(queued), std::move(claimed),
                  imq_config{opts.mail, std::chrono::milliseconds{1000}, host});
  hasher = smsp::spawn_hasher(sys, opts.hashing);
  dumper = spawn_dumper(sys, dir.str(), writer, opts.dump);
  auto reg_cfg = opts.registry;
  reg_cfg.mail = opts.mail;
  registry = spawn_registry(
    sys, registry_deps{hasher, imq, writer, reader, dumper, {}, host}, reg_cfg);
}

bool fixture::stop() {
  // Mailboxes spawned by a test: a pending request timeout (their load's)
  // would keep them, and the actor system's shutdown, alive for seconds.
  bool ok = true;
  for (auto& mb : boxes)
    ok = stop_actor(mb) && ok;
  boxes.clear();
  ok = stop_actor(registry) && ok;
  ok = stop_actor(imq) && ok;
  ok = stop_actor(hasher) && ok;
  ok = stop_actor(dumper) && ok;
  ok = stop_actor(reader) && ok;
  return stop_actor(writer) && ok;
}

void fixture::restart() {
  REQUIRE(stop());
  start();
}

bool fixture::wait_down(const caf::actor_addr& addr) {
  bool down = false;
  bool timed_out = false;
  while (!down && !timed_out)
    self->receive([&](caf::down_msg& msg) { down = msg.source == addr; },
                  caf::after(request_timeout) >> [&] { timed_out = true; });
  return down;
}

std::string fixture::db_file() const {
  return (dir.path / "smsp.db").string();
}

// -- the store as a new reader sees it ----------------------------------------

std::vector<std::string> fixture::stored_mailbox(const std::string& owner) {
  return texts_of(store::open_reader(dir.str()).mailbox(owner));
}

std::vector<queued_message> fixture::stored_imq() {
  return store::open_reader(dir.str()).imq();
}

// -- registry: accounts and sessions ------------------------------------------

caf::expected<std::string>
fixture::registry_register(const std::string& name,
                           const std::string& password) {
  return ask_registry<std::string>(register_atom::value, name, password);
}

std::string fixture::registry_must_register(const std::string& name,
                                            const std::string& password) {
  auto cookie = registry_register(name, password);
  REQUIRE(outcome(cookie) == "OK");
  return *cookie;
}

caf::expected<std::string> fixture::registry_login(const std::string& name,
                                                   const std::string& password,
                                                   const std::string& address) {
  return ask_registry<std::string>(login_atom::value, name, password, address);
}

caf::expected<caf::ok_atom>
fixture::registry_logout(const std::string& cookie) {
  return ask_registry<caf::ok_atom>(logout_atom::value, cookie);
}

registry_counts fixture::registry_stats() {
  auto f = must(ask_registry<smsp::registry_figures>(stats_atom::value));
  return {f.active_mailboxes, f.activations, f.passivations, f.cached_accounts};
}

registry_counts fixture::registry_sweep() {
  self->send(registry, caf::tick_atom::value);
  return registry_stats();
}

registry_counts fixture::registry_sweep_after(manual_clock& clock,
                                              std::chrono::milliseconds idle) {
  // Answered after every request sent before it: they are all routed.
  registry_stats();
  clock.advance(idle);
  return registry_sweep();
}

caf::expected<caf::ok_atom> fixture::registry_dump() {
  return ask_registry<caf::ok_atom>(dump_atom::value);
}

// -- registry: routed requests ------------------------------------------------

caf::expected<caf::ok_atom> fixture::registry_post(const std::string& cookie,
                                                   const std::string& text) {
  return ask_registry<caf::ok_atom>(post_atom::value, cookie, text);
}

caf::expected<caf::ok_atom> fixture::registry_store(const std::string& cookie,
                                                    const std::string& target) {
  return ask_registry<caf::ok_atom>(store_atom::value, cookie, target);
}

caf::expected<uint64_t> fixture::registry_count(const std::string& cookie,
                                                const std::string& owner) {
  return ask_registry<uint64_t>(count_atom::value, cookie, owner);
}

caf::expected<std::string> fixture::registry_get(const std::string& cookie,
                                                 const std::string& owner) {
  return ask_registry<std::string>(caf::get_atom::value, cookie, owner);
}

caf::expected<caf::ok_atom> fixture::registry_delete(const std::string& cookie,
                                                     const std::string& owner) {
  return ask_registry<caf::ok_atom>(caf::delete_atom::value, cookie, owner);
}

std::vector<std::string> fixture::registry_drain(const std::string& cookie,
                                                 const std::string& owner) {
  std::vector<std::string> texts;
  for (;;) {
    auto text = registry_get(cookie, owner);
    if (!text) {
      REQUIRE(outcome(text) == ko(errc::mailbox_empty));
      break;
    }
    texts.push_back(std::move(*text));
    REQUIRE(outcome(registry_delete(cookie, owner)) == "OK");
    REQUIRE(texts.size() <= 10000u);
  }
  CHECK(must(registry_count(cookie, owner)) == 0u);
  return texts;
}

void fixture::expect_session(const std::string& cookie,
                             const std::string& user) {
  INFO("expected a live session of " << user);
  auto before = registry_count(cookie, user);
  REQUIRE(outcome(before) == "OK");
  auto marker = "probe for " + user + " " + new_cookie();
  REQUIRE(outcome(registry_post(cookie, marker)) == "OK");
  // Into a mailbox that is no account's, so no mailbox actor caches it.
  CHECK(outcome(imq_store(user, "probe")) == "OK");
  auto probed = stored_mailbox("probe");
  CHECK((!probed.empty() && probed.back() == marker));
  auto after = registry_count(cookie, user);
  REQUIRE(outcome(after) == "OK");
  CHECK(*after == *before);
}

void fixture::expect_not_logged_in(const std::string& cookie,
                                   const std::string& user) {
  INFO("expected a dead cookie, user " << user);
  CHECK(outcome(registry_post(cookie, "from a dead cookie"))
        == ko(errc::not_logged_in));
  CHECK(outcome(registry_store(cookie, user)) == ko(errc::not_logged_in));
  CHECK(outcome(registry_count(cookie, user)) == ko(errc::not_logged_in));
  CHECK(outcome(registry_get(cookie, user)) == ko(errc::not_logged_in));
  CHECK(outcome(registry_delete(cookie, user)) == ko(errc::not_logged_in));
  CHECK(outcome(registry_logout(cookie)) == ko(errc::not_logged_in));
}

// -- mailbox (spawned directly, without the registry) -------------------------

mailbox_actor fixture::spawn_mailbox(const std::string& owner,
                                     mailbox_actor predecessor) {
  auto mb = smsp::spawn_mailbox(
    sys, owner,
    mailbox_deps{reader,
                 writer,
                 timeouts{},
                 opts.mail,
                 {},
                 opts.on_io_thread ? io_thread_of(sys) : nullptr},
    std::move(predecessor));
  boxes.push_back(mb);
  box_owners.emplace(mb.address(), owner);
  return mb;
}

caf::expected<caf::ok_atom> fixture::mailbox_store(const mailbox_actor& mb,
                                                   const std::string& poster) {
  auto pending = send_mailbox_store(mb, poster);
  return await_reply<caf::ok_atom>(pending);
}

caf::expected<caf::ok_atom> fixture::mailbox_deliver(const mailbox_actor& mb,
                                                     const std::string& text) {
  auto posted = imq_post("sender", text);
  if (!posted)
    return posted.error();
  return mailbox_store(mb, "sender");
}

caf::expected<std::string> fixture::mailbox_get(const mailbox_actor& mb) {
  return ask_mailbox<std::string>(mb, caf::get_atom::value);
}

caf::expected<caf::ok_atom> fixture::mailbox_delete(const mailbox_actor& mb) {
  return ask_mailbox<caf::ok_atom>(mb, caf::delete_atom::value);
}

caf::expected<uint64_t> fixture::mailbox_count(const mailbox_actor& mb) {
  return ask_mailbox<uint64_t>(mb, count_atom::value);
}

caf::expected<caf::ok_atom> fixture::mailbox_retire(const mailbox_actor& mb) {
  return ask_mailbox<caf::ok_atom>(mb, retire_atom::value);
}

// -- IMQ ----------------------------------------------------------------------

caf::expected<caf::ok_atom> fixture::imq_post(const std::string& poster,
                                              const std::string& text) {
  return ask_imq<caf::ok_atom>(post_atom::value, poster, text);
}

caf::expected<caf::ok_atom> fixture::imq_store(const std::string& poster,
                                               const std::string& owner) {
  auto mb = spawn_mailbox(owner);
  auto result = mailbox_store(mb, poster);
  must(mailbox_retire(mb));
  return result;
}

uint64_t fixture::imq_count() {
  return must(ask_imq<uint64_t>(count_atom::value));
}

bool fixture::imq_has_nothing_for(const std::string& poster) {
  return outcome(imq_store(poster, "probe")) == ko(errc::nothing_to_store);
}

// -- writer -------------------------------------------------------------------

std::tuple<uint64_t, uint64_t> fixture::writer_stats() {
  return must(ask_writer<std::tuple<uint64_t, uint64_t>>(stats_atom::value));
}

// -- hasher -------------------------------------------------------------------

hasher_actor fixture::spawn_hasher(const hasher_config& pool_cfg) {
  return smsp::spawn_hasher(sys, pool_cfg);
}

} // namespace smsp::testing
