// Order tests: pipelined and concurrent requests through the registry.
#include "tests/actors/fixture.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("pipelined requests from one client are answered in order",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  auto& self = f.self;
  auto& reg = f.registry;
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
  CHECK(outcome(f.registry_store(alice, "alice"))
        == ko(errc::nothing_to_store));
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
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  auto& self = f.self;
  auto& reg = f.registry;
  constexpr int n = 50;
  using ok_handle = decltype(self->request(reg, request_timeout,
                                           post_atom::value, alice, "x"s));
  using text_handle = decltype(self->request(
    reg, request_timeout, caf::get_atom::value, bob, "bob"s));
  // n POSTs then n STOREs, all sent before the first reply is read: each
  // STORE takes the most recent message that no STORE before it took.
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
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
}

TEST_CASE("concurrent clients posting and storing to one user lose nothing",
          "[actors]") {
  fixture f;
  auto bob = f.registry_must_register("bob", "hunter22");
  constexpr int users = 8;
  constexpr int per_user = 5;
  std::vector<std::string> cookies;
  for (int u = 0; u < users; ++u)
    cookies.push_back(f.registry_must_register("u" + std::to_string(u), "pw"));
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
  auto texts = f.registry_drain(bob, "bob");
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
    CHECK(f.imq_has_nothing_for(name));
  }
}

// -- STORE without a barrier --------------------------------------------------
// A connection sends on after a STORE (when every mailbox is in this
// process), so these send whole pipelines at once, as a client would, and
// check that every answer is the one the requests would get one at a time.

namespace {

/// The fixture's options, with the IMQ, registry and mailboxes on the I/O
/// thread as in the server, or on the scheduler.
options placed(bool on_io_thread) {
  options o;
  o.on_io_thread = on_io_thread;
  return o;
}

} // namespace

TEST_CASE("pipelined mail cycles to one's own mailbox keep their order",
          "[actors]") {
  auto on_io_thread = GENERATE(false, true);
  CAPTURE(on_io_thread);
  fixture f{placed(on_io_thread)};
  auto alice = f.registry_must_register("alice", "s3cret");
  constexpr int cycles = 40;
  using ok_handle = decltype(f.send_registry(post_atom::value, alice, "x"s));
  using count_handle
    = decltype(f.send_registry(count_atom::value, alice, "alice"s));
  using text_handle
    = decltype(f.send_registry(caf::get_atom::value, alice, "alice"s));
  struct cycle {
    ok_handle post;
    ok_handle store;
    count_handle count;
    text_handle get;
    ok_handle del;
  };
  // MESSAGE, STORE to oneself, COUNT, GETMSG, DELMSG: every cycle sent
  // before the first answer is read.
  std::vector<cycle> sent;
  for (int i = 0; i < cycles; ++i) {
    auto text = "m" + std::to_string(i);
    auto post = f.send_registry(post_atom::value, alice, text);
    auto store = f.send_registry(store_atom::value, alice, "alice"s);
    auto count = f.send_registry(count_atom::value, alice, "alice"s);
    auto get = f.send_registry(caf::get_atom::value, alice, "alice"s);
    auto del = f.send_registry(caf::delete_atom::value, alice, "alice"s);
    sent.push_back({post, store, count, get, del});
  }
  for (int i = 0; i < cycles; ++i) {
    INFO("cycle " << i);
    auto& c = sent[i];
    CHECK(outcome(await_reply<caf::ok_atom>(c.post)) == "OK");
    CHECK(outcome(await_reply<caf::ok_atom>(c.store)) == "OK");
    CHECK(must(await_reply<uint64_t>(c.count)) == 1u);
    CHECK(must(await_reply<std::string>(c.get)) == "m" + std::to_string(i));
    CHECK(outcome(await_reply<caf::ok_atom>(c.del)) == "OK");
  }
  CHECK(must(f.registry_count(alice, "alice")) == 0u);
  CHECK(f.imq_has_nothing_for("alice"));
  CHECK(f.stored_mailbox("alice").empty());
}

TEST_CASE("a STORE never takes a MESSAGE sent after it", "[actors]") {
  auto on_io_thread = GENERATE(false, true);
  CAPTURE(on_io_thread);
  fixture f{placed(on_io_thread)};
  auto alice = f.registry_must_register("alice", "s3cret");
  f.registry_must_register("bob", "hunter22");
  f.registry_must_register("carol", "pw");
  // The MESSAGE after each STORE commits with it (one group), and reaches
  // the IMQ before the STORE's turn comes.
  auto p1 = f.send_registry(post_atom::value, alice, "a1"s);
  auto s1 = f.send_registry(store_atom::value, alice, "bob"s);
  auto p2 = f.send_registry(post_atom::value, alice, "a2"s);
  auto s2 = f.send_registry(store_atom::value, alice, "carol"s);
  auto p3 = f.send_registry(post_atom::value, alice, "a3"s);
  auto s3 = f.send_registry(store_atom::value, alice, "carol"s);
  auto s4 = f.send_registry(store_atom::value, alice, "bob"s);
  for (auto* h : {&p1, &s1, &p2, &s2, &p3, &s3})
    CHECK(outcome(await_reply<caf::ok_atom>(*h)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(s4)) == ko(errc::nothing_to_store));
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"a1"});
  CHECK(f.stored_mailbox("carol") == std::vector<std::string>{"a2", "a3"});
}

TEST_CASE("STOREs take their messages in the order sent, also while a "
          "target is looked up",
          "[actors]") {
  auto on_io_thread = GENERATE(false, true);
  CAPTURE(on_io_thread);
  auto o = placed(on_io_thread);
  // One cached account: registering carol last pushes bob's out, so his
  // STORE waits for the store's lookup while the later ones need none.
  o.registry.account_cache = 1;
  fixture f{o};
  f.registry_must_register("bob", "hunter22");
  auto carol = f.registry_must_register("carol", "pw");
  auto alice = f.registry_must_register("alice", "s3cret");
  REQUIRE(outcome(f.registry_post(alice, "a1")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "a2")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "a3")) == "OK");
  // Only alice's account is cached, and no mailbox is active.
  auto before = f.registry_stats();
  CHECK(before.cached == 1u);
  CHECK(before.active == 0u);
  auto to_bob = f.send_registry(store_atom::value, alice, "bob"s);
  auto to_self = f.send_registry(store_atom::value, alice, "alice"s);
  auto to_ghost = f.send_registry(store_atom::value, alice, "ghost"s);
  auto count = f.send_registry(count_atom::value, alice, "alice"s);
  auto to_carol = f.send_registry(store_atom::value, alice, "carol"s);
  CHECK(outcome(await_reply<caf::ok_atom>(to_bob)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(to_self)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(to_ghost)) == ko(errc::no_such_user));
  CHECK(must(await_reply<uint64_t>(count)) == 1u);
  CHECK(outcome(await_reply<caf::ok_atom>(to_carol)) == "OK");
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"a3"});
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"a2"});
  CHECK(f.stored_mailbox("carol") == std::vector<std::string>{"a1"});
  CHECK(must(f.registry_get(carol, "carol")) == "a1");
}

TEST_CASE("a pipelined STORE to a full mailbox leaves its message for the "
          "next",
          "[actors]") {
  auto on_io_thread = GENERATE(false, true);
  CAPTURE(on_io_thread);
  auto o = placed(on_io_thread);
  o.mail.max_mailbox = 1;
  fixture f{o};
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  f.registry_must_register("carol", "pw");
  REQUIRE(outcome(f.registry_post(alice, "a1")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "a2")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "a3")) == "OK");
  // bob has room for one: the first STORE fills it, the second finds it
  // full and leaves a2 for carol's. Then bob's DELMSG makes room, which
  // the STORE after it sees although the DELMSG waited for a STORE.
  auto s1 = f.send_registry(store_atom::value, alice, "bob"s);
  auto s2 = f.send_registry(store_atom::value, alice, "bob"s);
  auto s3 = f.send_registry(store_atom::value, alice, "carol"s);
  auto del = f.send_registry(caf::delete_atom::value, bob, "bob"s);
  auto s4 = f.send_registry(store_atom::value, alice, "bob"s);
  auto get = f.send_registry(caf::get_atom::value, bob, "bob"s);
  CHECK(outcome(await_reply<caf::ok_atom>(s1)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(s2)) == ko(errc::mailbox_full));
  CHECK(outcome(await_reply<caf::ok_atom>(s3)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(del)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(s4)) == "OK");
  CHECK(must(await_reply<std::string>(get)) == "a1");
  CHECK(f.stored_mailbox("carol") == std::vector<std::string>{"a2"});
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"a1"});
}

TEST_CASE("a MESSAGE at the limit behind a STORE counts the place it frees",
          "[actors]") {
  auto on_io_thread = GENERATE(false, true);
  CAPTURE(on_io_thread);
  auto o = placed(on_io_thread);
  o.mail.max_imq_per_user = 2;
  o.mail.max_mailbox = 1;
  fixture f{o};
  auto alice = f.registry_must_register("alice", "s3cret");
  f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "x1")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "x2")) == "OK");
  // One at a time, the STORE frees a place that the MESSAGE takes; the next
  // MESSAGE finds the limit again. The second STORE finds bob full and
  // frees nothing, so the MESSAGE after it is refused.
  auto s1 = f.send_registry(store_atom::value, alice, "bob"s);
  auto p3 = f.send_registry(post_atom::value, alice, "x3"s);
  auto p4 = f.send_registry(post_atom::value, alice, "x4"s);
  auto s2 = f.send_registry(store_atom::value, alice, "bob"s);
  auto p5 = f.send_registry(post_atom::value, alice, "x5"s);
  CHECK(outcome(await_reply<caf::ok_atom>(s1)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(p3)) == "OK");
  CHECK(outcome(await_reply<caf::ok_atom>(p4)) == ko(errc::too_many_unstored));
  CHECK(outcome(await_reply<caf::ok_atom>(s2)) == ko(errc::mailbox_full));
  CHECK(outcome(await_reply<caf::ok_atom>(p5)) == ko(errc::too_many_unstored));
  CHECK(f.stored_mailbox("bob") == std::vector<std::string>{"x2"});
  CHECK(f.imq_count() == 2u);
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  CHECK(f.stored_mailbox("alice") == std::vector<std::string>{"x3"});
}
