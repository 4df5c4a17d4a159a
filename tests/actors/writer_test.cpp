// Writer actor tests: group commit, storage failures, durability over restarts.
#include "tests/actors/fixture.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

// -- group commit -------------------------------------------------------------

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
  // The first stage, every client's posts, pipelined, is sent while another
  // connection holds the database's write lock: the writer's first BEGIN
  // waits for it and every post queues behind that one, so they all share
  // its commit whatever the machine's speed. Each client's thread then
  // takes over its actor and its pending posts.
  std::vector<std::unique_ptr<caf::scoped_actor>> selves;
  for (int c = 0; c < clients; ++c)
    selves.emplace_back(std::make_unique<caf::scoped_actor>(f.sys));
  using post_handle
    = decltype((*selves[0])
                 ->request(f.writer, request_timeout, post_atom::value,
                           std::string{}, std::string{}));
  std::vector<std::vector<post_handle>> posted(clients);
  {
    write_lock lock{f.db_file()};
    for (int c = 0; c < clients; ++c)
      for (int i = 0; i < posts; ++i)
        posted[c].emplace_back((*selves[c])
                                 ->request(f.writer, request_timeout,
                                           post_atom::value, poster(c),
                                           text(c, i)));
  }
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      auto& self = *selves[c];
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
      for (auto& h : posted[c]) {
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
  // Several writes per commit on average, not one commit each: the 320
  // posts share one commit (see above), the 200 moves and deletes that
  // follow take at most one each.
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

// -- storage failures ---------------------------------------------------------

TEST_CASE("a STORE whose commit fails keeps the message on the IMQ",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "first")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "second")) == "OK");
  // Bob's mailbox is active and loaded before the database gets locked.
  REQUIRE(must(f.registry_count(bob, "bob")) == 0u);
  std::string log;
  caf::expected<caf::ok_atom> failed{caf::ok_atom::value};
  {
    stderr_capture capture;
    // Another connection holds the write lock past the store's busy
    // timeout: the writer's transaction for this STORE cannot start.
    write_lock lock{f.db_file()};
    failed = f.ask_registry_within<caf::ok_atom>(
      caf::duration{30s}, store_atom::value, alice, "bob"s);
    lock.release();
    log = capture.text();
  }
  INFO("log:\n" << log);
  CHECK(outcome(failed) == ko(errc::storage_failed));
  CHECK(log.find("store: write failed") != std::string::npos);
  // Nothing of it happened: bob has no mail, the IMQ still has both.
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
  CHECK(f.imq_count() == 2u);
  CHECK(f.stored_mailbox("bob").empty());
  CHECK(f.stored_imq().size() == 2u);
  // The message is back at its old place: the next STOREs deliver "second"
  // (the most recent), then "first", each exactly once.
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"second", "first"});
  CHECK(f.stored_imq().empty());
  CHECK(f.registry_drain(bob, "bob")
        == std::vector<std::string>{"second", "first"});
}

TEST_CASE("a STORE while the writer is gone fails and loses nothing",
          "[actors][durability]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "first")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "second")) == "OK");
  REQUIRE(must(f.registry_count(bob, "bob")) == 0u);
  // The writer dies between two requests, as if it had crashed.
  f.kill_and_wait(f.writer);
  CHECK_FALSE(f.registry_store(alice, "bob"));
  CHECK_FALSE(f.registry_store(alice, "bob"));
  CHECK_FALSE(f.registry_post(alice, "never acknowledged"));
  // In memory nothing moved: bob has no mail, both messages are queued.
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
  CHECK(f.imq_count() == 2u);
  // After a restart both are still there and storable, newest first.
  f.restart();
  auto alice2 = must(f.registry_login("alice", "s3cret"));
  auto bob2 = must(f.registry_login("bob", "hunter22"));
  CHECK(f.imq_count() == 2u);
  REQUIRE(outcome(f.registry_store(alice2, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice2, "bob")) == "OK");
  CHECK(outcome(f.registry_store(alice2, "bob")) == ko(errc::nothing_to_store));
  CHECK(f.registry_drain(bob2, "bob")
        == std::vector<std::string>{"second", "first"});
}

// -- durability ---------------------------------------------------------------

TEST_CASE("accounts and mailboxes and the IMQ survive a restart but "
          "sessions do not",
          "[actors][durability]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  auto carol = f.registry_must_register("carol", "pw");
  for (auto text : {"a1", "a2", "a3", "a4"})
    REQUIRE(outcome(f.registry_post(alice, text)) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");   // a4
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");   // a3
  REQUIRE(outcome(f.registry_store(alice, "carol")) == "OK"); // a2
  REQUIRE(outcome(f.registry_post(alice, "a5")) == "OK");
  REQUIRE(outcome(f.registry_post(bob, "b1")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_delete(bob, "bob")) == "OK"); // a4
  REQUIRE(outcome(f.registry_post(carol, "c1")) == "OK");
  // Left: bob [a3 b1], carol [a2], queued a1 a5 (alice) and c1 (carol).
  REQUIRE(f.imq_count() == 3u);

  f.restart();

  CHECK(f.imq_count() == 3u);
  auto fresh = f.registry_stats();
  CHECK(fresh.active == 0u);
  CHECK(fresh.cached == 0u);
  // Sessions are not durable.
  f.expect_not_logged_in(alice, "alice");
  f.expect_not_logged_in(bob, "bob");
  f.expect_not_logged_in(carol, "carol");
  // Accounts are, with their passwords.
  CHECK(outcome(f.registry_register("alice", "other"))
        == ko(errc::user_exists));
  CHECK(outcome(f.registry_login("alice", "other")) == ko(errc::login_failed));
  CHECK(outcome(f.registry_login("dave", "pw")) == ko(errc::login_failed));
  auto alice2 = must(f.registry_login("alice", "s3cret"));
  auto bob2 = must(f.registry_login("bob", "hunter22"));
  auto carol2 = must(f.registry_login("carol", "pw"));
  // Mailboxes hold exactly the committed messages, in order.
  CHECK(must(f.registry_count(bob2, "bob")) == 2u);
  CHECK(must(f.registry_get(bob2, "bob")) == "a3");
  CHECK(must(f.registry_count(carol2, "carol")) == 1u);
  CHECK(must(f.registry_count(alice2, "alice")) == 0u);
  // The IMQ still has the unstored ones: STORE takes the most recent first.
  REQUIRE(outcome(f.registry_store(alice2, "alice")) == "OK");
  REQUIRE(outcome(f.registry_store(alice2, "alice")) == "OK");
  CHECK(outcome(f.registry_store(alice2, "alice"))
        == ko(errc::nothing_to_store));
  REQUIRE(outcome(f.registry_store(carol2, "bob")) == "OK");
  CHECK(f.imq_count() == 0u);
  CHECK(f.registry_drain(alice2, "alice")
        == std::vector<std::string>{"a5", "a1"});
  CHECK(f.registry_drain(bob2, "bob")
        == std::vector<std::string>{"a3", "b1", "c1"});
  // New mail after the restart goes behind the old.
  REQUIRE(outcome(f.registry_post(bob2, "b2")) == "OK");
  REQUIRE(outcome(f.registry_store(bob2, "carol")) == "OK");

  // Once more: the deletes and the new mail are durable too.
  f.restart();
  auto alice3 = must(f.registry_login("alice", "s3cret"));
  auto bob3 = must(f.registry_login("bob", "hunter22"));
  auto carol3 = must(f.registry_login("carol", "pw"));
  f.expect_not_logged_in(alice2, "alice");
  CHECK(f.imq_count() == 0u);
  CHECK(must(f.registry_count(alice3, "alice")) == 0u);
  CHECK(must(f.registry_count(bob3, "bob")) == 0u);
  CHECK(f.registry_drain(carol3, "carol")
        == std::vector<std::string>{"a2", "b2"});
}
