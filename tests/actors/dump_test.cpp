// DUMP tests: the registry's figures, the IMQ and every mailbox in the log.
#include "tests/actors/fixture.hpp"

#include <string>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("DUMP on the registry replies ok and changes nothing", "[actors]") {
  fixture f;
  // Empty first.
  CHECK(outcome(f.registry_dump()) == "OK");
  // Then with accounts, one of them with a mailbox, and queued messages.
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  REQUIRE(outcome(f.registry_post(alice, "kept")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  for (int i = 0; i < 15; ++i)
    REQUIRE(outcome(f.registry_post(alice, "queued " + std::to_string(i)))
            == "OK");
  auto before = f.registry_stats();
  CHECK(outcome(f.registry_dump()) == "OK");
  // DUMP changes nothing: no mailbox activated, nothing moved.
  auto after = f.registry_stats();
  CHECK(after.active == before.active);
  CHECK(after.activations == before.activations);
  CHECK(f.imq_count() == 15u);
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  f.expect_session(alice, "alice");
  f.expect_session(bob, "bob");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  CHECK(must(f.registry_get(alice, "alice")) == "kept");
  CHECK(must(f.registry_count(alice, "alice")) == 2u);
  CHECK(must(f.registry_count(bob, "bob")) == 0u);
}

TEST_CASE("DUMP through the registry logs its figures and the IMQ and every "
          "mailbox",
          "[actors]") {
  fixture f;
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  f.registry_must_register("carol", "pw");
  REQUIRE(outcome(f.registry_logout(bob)) == "OK");
  REQUIRE(outcome(f.registry_post(alice, "kept")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  for (int i = 0; i < 12; ++i)
    REQUIRE(outcome(f.registry_post(alice, "queued " + std::to_string(i)))
            == "OK");
  std::string log;
  caf::expected<caf::ok_atom> dumped{caf::ok_atom::value};
  {
    stderr_capture capture;
    // The helper answers after it logged, so its lines are written by now.
    dumped = f.registry_dump();
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
  manual_clock clock;
  options opts;
  opts.registry.mailbox_idle = 1min;
  opts.registry.now = clock.fn();
  fixture f{opts};
  constexpr int n = 5;
  std::vector<std::string> cookies;
  for (int u = 0; u < n; ++u)
    cookies.push_back(f.registry_must_register("u" + std::to_string(u), "pw"));
  // uK gets K messages, so every count differs; u0 is never touched.
  for (int u = 1; u < n; ++u)
    for (int k = 0; k < u; ++k) {
      auto text = "for u" + std::to_string(u) + " #" + std::to_string(k);
      REQUIRE(outcome(f.registry_post(cookies[u], text)) == "OK");
      REQUIRE(outcome(f.registry_store(cookies[u], "u" + std::to_string(u)))
              == "OK");
    }
  // The four touched mailboxes, each activated once, all go idle.
  auto before = f.registry_sweep_after(clock, opts.registry.mailbox_idle);
  REQUIRE(before.active == 0u);
  CHECK(before.activations == static_cast<uint64_t>(n - 1));
  CHECK(before.passivations == static_cast<uint64_t>(n - 1));
  std::string log;
  caf::expected<caf::ok_atom> dumped{caf::ok_atom::value};
  {
    stderr_capture capture;
    dumped = f.registry_dump();
    log = capture.text();
  }
  INFO("log:\n" << log);
  CHECK(outcome(dumped) == "OK");
  CHECK(log.find("DUMP registry: 5 live session(s), 0 active mailbox(es) "
                 "(4 activated, 4 passivated), 5 cached account(s)")
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
  auto after = f.registry_stats();
  CHECK(after.active == 0u);
  CHECK(after.activations == before.activations);
}
