// Limit tests: a full mailbox and too many unstored messages per poster.
#include "tests/actors/fixture.hpp"

#include <string>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("a full mailbox refuses STORE and the message stays on the IMQ",
          "[actors][limits]") {
  options opts;
  opts.mail.max_mailbox = 3;
  fixture f{opts};
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  auto carol = f.registry_must_register("carol", "pw");
  for (auto text : {"m1", "m2", "m3", "m4"})
    REQUIRE(outcome(f.registry_post(alice, text)) == "OK");
  for (int i = 0; i < 3; ++i)
    REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(outcome(f.registry_store(alice, "bob")) == ko(errc::mailbox_full));
  CHECK(f.imq_count() == 1u);
  CHECK(f.stored_imq().size() == 1u);
  CHECK(must(f.registry_count(bob, "bob")) == 3u);
  // Other mailboxes are not full.
  REQUIRE(outcome(f.registry_post(bob, "b1")) == "OK");
  REQUIRE(outcome(f.registry_store(bob, "carol")) == "OK");
  // Once bob made room, the same message goes in.
  REQUIRE(outcome(f.registry_delete(bob, "bob")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  CHECK(f.imq_has_nothing_for("alice"));
  CHECK(f.registry_drain(bob, "bob")
        == std::vector<std::string>{"m3", "m2", "m1"});
  // STOREs under way count: of five pipelined, three fit.
  for (auto text : {"p1", "p2", "p3", "p4", "p5"})
    REQUIRE(outcome(f.registry_post(alice, text)) == "OK");
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
  CHECK(f.registry_drain(carol, "carol") == std::vector<std::string>{"b1"});
}

TEST_CASE("too many unstored messages of one poster are refused while "
          "others post on",
          "[actors][limits]") {
  options opts;
  opts.mail.max_imq_per_user = 2;
  fixture f{opts};
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  auto carol = f.registry_must_register("carol", "pw");
  REQUIRE(outcome(f.registry_post(alice, "x1")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "x2")) == "OK");
  CHECK(outcome(f.registry_post(alice, "x3")) == ko(errc::too_many_unstored));
  // Another poster is not affected.
  REQUIRE(outcome(f.registry_post(bob, "y1")) == "OK");
  REQUIRE(outcome(f.registry_post(bob, "y2")) == "OK");
  CHECK(outcome(f.registry_post(bob, "y3")) == ko(errc::too_many_unstored));
  // The refused post was not queued; a STORE makes room for one more.
  REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "x4")) == "OK");
  CHECK(outcome(f.registry_post(alice, "x5")) == ko(errc::too_many_unstored));
  CHECK(f.imq_count() == 4u);
  CHECK(must(f.registry_get(bob, "bob")) == "x2");
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
  auto bob2 = must(f.registry_login("bob", "hunter22"));
  CHECK(outcome(f.registry_post(bob2, "y4")) == ko(errc::too_many_unstored));
  auto alice2 = must(f.registry_login("alice", "s3cret"));
  REQUIRE(outcome(f.registry_store(alice2, "alice")) == "OK");
  REQUIRE(outcome(f.registry_store(alice2, "alice")) == "OK");
  CHECK(outcome(f.registry_store(alice2, "alice"))
        == ko(errc::nothing_to_store));
  CHECK(f.registry_drain(alice2, "alice")
        == std::vector<std::string>{"x4", "x1"});
  CHECK(f.stored_imq().size() == 4u); // y1 y2 z0 z1
}
