// Durability over real TCP: replies follow commits, groups share commits,
// data outlives the server, one server per data dir.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sqlite3.h>
#include <unistd.h>

#include "actors/store/store.hpp"
#include "app/line_client.hpp"
#include "app/server.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "tests/server/resolved.hpp"
#include "tests/test_support.hpp"

using smsp::line_client;
using smsp::testing::stderr_capture;
using smsp::testing::temp_dir;
using namespace std::string_literals;

namespace {

/// A server on `data_dir` in an actor system of its own; stopping it (the
/// destructor) closes the store.
struct running_server {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  smsp::server srv;

  running_server(const std::string& data_dir, smsp::sync_mode sync,
                 std::chrono::microseconds commit_delay = {}) {
    cfg.load<caf::io::middleman>();
    smsp::configure_actor_system(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    smsp::server_options opts;
    opts.server.port = 0;
    opts.server.hashing.cost = smsp::pwhash_cost::min;
    opts.server.data_dir = data_dir;
    opts.server.sync = sync;
    opts.commit_delay = commit_delay;
    auto started = smsp::start_server(*sys, smsp::testing::resolved(opts));
    if (!started)
      FAIL("server did not start: " << sys->render(started.error()));
    srv = *started;
  }

  ~running_server() {
    smsp::stop_server(srv);
    // The actor system's destructor waits for the writer, which owns the
    // store: after this, the data dir is unlocked. Detached actors are
    // only destroyed once no handle is left, so drop ours first.
    srv = smsp::server{};
    sys.reset();
  }

  std::unique_ptr<line_client> connect() {
    return std::make_unique<line_client>("127.0.0.1", srv.port);
  }

  /// Messages the IMQ holds or is posting: it counts a MESSAGE as soon as
  /// it has passed it on to the writer, before the commit.
  uint64_t imq_count() {
    caf::scoped_actor self{*sys};
    uint64_t result = 0;
    self->request(srv.imq, std::chrono::seconds{10}, smsp::count_atom::value)
      .receive([&](uint64_t n) { result = n; },
               [&](caf::error& err) { FAIL(sys->render(err)); });
    return result;
  }

  /// (commits, writes) of the store's writer since start.
  std::pair<uint64_t, uint64_t> store_stats() {
    caf::scoped_actor self{*sys};
    std::pair<uint64_t, uint64_t> result;
    self->request(srv.writer, std::chrono::seconds{10}, smsp::stats_atom::value)
      .receive(
        [&](uint64_t commits, uint64_t writes) {
          result = {commits, writes};
        },
        [&](caf::error& err) { FAIL(sys->render(err)); });
    return result;
  }
};

/// Holds the database's write lock from a connection of its own, as another
/// program could: the writer's next BEGIN waits for it (up to the store's
/// busy timeout, 5 s).
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

std::string cookie_of(const std::string& reply) {
  REQUIRE(reply.rfind("OK ", 0) == 0);
  REQUIRE(reply.size() == 35);
  return reply.substr(3);
}

/// What the data dir's database holds right now, read as another process
/// would: only committed data is visible.
struct snapshot {
  smsp::store db;
  explicit snapshot(const std::string& dir)
    : db(smsp::store::open_reader(dir)) {
  }
  std::vector<std::string> mailbox(const std::string& owner) {
    std::vector<std::string> texts;
    for (auto& mail : db.mailbox(owner))
      texts.push_back(mail.text);
    return texts;
  }
  size_t queued_by(const std::string& poster) {
    size_t n = 0;
    for (auto& entry : db.imq())
      n += entry.poster == poster;
    return n;
  }
};

} // namespace

TEST_CASE("every OK to a write is already committed when it arrives",
          "[durability]") {
  temp_dir dir;
  // A commit delay widens the gap a premature OK would fall into.
  running_server server{dir.str(), smsp::sync_mode::full,
                        std::chrono::microseconds{2000}};
  auto alice = server.connect();
  auto bob = server.connect();
  auto a = cookie_of(alice->call("REGISTER alice pw-a"));
  snapshot committed{dir.str()};
  CHECK(committed.db.password_hash("alice"));
  auto b = cookie_of(bob->call("REGISTER bob pw-b"));
  CHECK(committed.db.password_hash("bob"));
  std::vector<std::string> expected;
  for (int i = 0; i < 60; ++i) {
    auto text = "note " + std::to_string(i);
    REQUIRE(alice->call("MESSAGE " + text + " " + a) == "OK");
    REQUIRE(committed.queued_by("alice") == 1);
    REQUIRE(alice->call("STORE bob " + a) == "OK");
    expected.push_back(text);
    REQUIRE(committed.queued_by("alice") == 0);
    REQUIRE(committed.mailbox("bob") == expected);
    if (i % 3 == 2) {
      REQUIRE(bob->call("DELMSG bob " + b) == "OK");
      expected.erase(expected.begin());
      REQUIRE(committed.mailbox("bob") == expected);
    }
  }
}

TEST_CASE("concurrent writers share commits", "[durability]") {
  temp_dir dir;
  running_server server{dir.str(), smsp::sync_mode::full};
  constexpr int clients = 20;
  constexpr int messages = 30;
  std::vector<std::string> cookies;
  std::vector<std::unique_ptr<line_client>> conns;
  {
    auto setup = server.connect();
    for (int i = 0; i < clients; ++i)
      cookies.push_back(
        cookie_of(setup->call("REGISTER w" + std::to_string(i) + " pw")));
  }
  for (int i = 0; i < clients; ++i)
    conns.push_back(server.connect());
  auto text = [](int k) { return "m" + std::to_string(k); };
  // Every client's first MESSAGE is sent while another connection holds the
  // database's write lock, so the writer cannot commit; once the IMQ has
  // passed all of them on, the lock goes. Whatever the machine's speed,
  // they all wait for the writer's next commit, and share it.
  auto before = server.store_stats();
  REQUIRE(server.imq_count() == 0);
  {
    write_lock lock{(dir.path / "smsp.db").string()};
    for (int i = 0; i < clients; ++i)
      conns[i]->send_raw("MESSAGE " + text(0) + " " + cookies[i] + "\n");
    // Passing them on takes milliseconds; the bound is a hang detector
    // under the store's busy timeout (5 s), within which the lock must go.
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds{4};
    bool all_passed_on = false;
    while (!(all_passed_on = server.imq_count() == uint64_t{clients})
           && std::chrono::steady_clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds{1});
    CHECK(all_passed_on);
  }
  for (auto& conn : conns)
    CHECK(conn->read_reply() == std::string{"OK"});
  auto grouped = server.store_stats();
  CHECK(grouped.second - before.second == uint64_t{clients});
  CHECK(grouped.first - before.first == 1);
  // Then each client goes on at its own pace, one request at a time.
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      auto& conn = conns[i];
      auto target = "w" + std::to_string((i + 1) % clients);
      for (int k = 0; k < messages; ++k) {
        if (k > 0)
          wrong += conn->call("MESSAGE " + text(k) + " " + cookies[i]) != "OK";
        wrong += conn->call("STORE " + target + " " + cookies[i]) != "OK";
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(wrong == 0);
  auto after = server.store_stats();
  auto writes = after.second - before.second;
  auto commits = after.first - before.first;
  CHECK(writes == uint64_t{clients} * messages * 2);
  // How the rest grouped depends on the machine's speed: shown, not checked.
  INFO(writes << " writes in " << commits << " commits");
  CHECK(commits <= writes);
  snapshot committed{dir.str()};
  for (int i = 0; i < clients; ++i) {
    auto texts = committed.mailbox("w" + std::to_string(i));
    REQUIRE(texts.size() == size_t{messages});
    for (int k = 0; k < messages; ++k)
      CHECK(texts[k] == text(k));
  }
}

TEST_CASE("accounts, the IMQ and mailboxes outlive the server but sessions do "
          "not",
          "[durability]") {
  temp_dir dir;
  std::string old_cookie;
  {
    running_server server{dir.str(), smsp::sync_mode::normal};
    auto c = server.connect();
    old_cookie = cookie_of(c->call("REGISTER carol pw-c"));
    cookie_of(c->call("REGISTER dave pw-d"));
    for (auto text : {"first", "second", "third"})
      REQUIRE(c->call("MESSAGE "s + text + " " + old_cookie) == "OK");
    REQUIRE(c->call("STORE dave " + old_cookie) == "OK");
  }
  running_server server{dir.str(), smsp::sync_mode::full};
  auto c = server.connect();
  CHECK(c->call("COUNT carol " + old_cookie) == "KO not logged in");
  CHECK(c->call("LOGIN carol wrong") == "KO wrong username or password");
  auto carol = cookie_of(c->call("LOGIN carol pw-c"));
  auto dave = cookie_of(c->call("LOGIN dave pw-d"));
  CHECK(c->call("GETMSG dave " + dave) == "OK third");
  // The IMQ kept the other two; STORE still takes the most recent first.
  CHECK(c->call("STORE dave " + carol) == "OK");
  CHECK(c->call("STORE dave " + carol) == "OK");
  CHECK(c->call("STORE dave " + carol) == "KO nothing to store");
  CHECK(c->call("COUNT dave " + dave) == "COUNTED 3");
  for (auto text : {"third", "second", "first"}) {
    CHECK(c->call("GETMSG dave " + dave) == "OK "s + text);
    CHECK(c->call("DELMSG dave " + dave) == "OK");
  }
  CHECK(c->call("REGISTER carol other") == "KO user exists");
}

TEST_CASE("one server per data dir", "[durability]") {
  temp_dir dir;
  running_server first{dir.str(), smsp::sync_mode::full};
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  smsp::server_options conf;
  conf.server.port = 0;
  conf.server.data_dir = dir.str();
  try {
    auto second = smsp::start_server(sys, smsp::testing::resolved(conf));
    if (second)
      smsp::stop_server(*second);
    FAIL("a second server started on a data dir in use");
  } catch (const smsp::store_error& err) {
    CHECK_THAT(err.what(),
               Catch::Contains("in use by another running smsp-actors"));
  }
  auto c = first.connect();
  CHECK(cookie_of(c->call("REGISTER erin pw-e")).size() == 32);
}

TEST_CASE("a pipelined DUMP shows the writes sent before it", "[durability]") {
  temp_dir dir;
  running_server server{dir.str(), smsp::sync_mode::full,
                        std::chrono::microseconds{2000}};
  auto c = server.connect();
  auto me = cookie_of(c->call("REGISTER frank pw-f"));
  stderr_capture log;
  // One write: nothing waits for the MESSAGEs' commits but the DUMP.
  c->send_raw("MESSAGE one " + me + "\nMESSAGE two " + me + "\nSTORE frank "
              + me + "\nDUMP\n");
  for (auto expected : {"OK", "OK", "OK", "OK"})
    CHECK(c->read_reply() == std::string{expected});
  auto text = log.text();
  CHECK_THAT(text, Catch::Contains("DUMP imq: 1 message(s) [frank: one]"));
  CHECK_THAT(text, Catch::Contains("DUMP mailbox frank: 1 message(s) [two]"));
}
