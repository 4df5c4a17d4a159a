// Throttle tests: the registry's brute-force penalty on LOGIN.
#include "tests/actors/fixture.hpp"

#include <chrono>
#include <string>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

namespace {

/// Windows of 200 ms doubling to 800 ms (the policy of the defaults, 1 s to
/// 15 s, scaled down), timed by `clock`: a window ends when the test
/// advances the clock past it, never because the machine was slow.
options throttled(const manual_clock& clock) {
  options opts;
  opts.registry.throttle.first_penalty = std::chrono::milliseconds{200};
  opts.registry.throttle.max_penalty = std::chrono::milliseconds{800};
  opts.registry.now = clock.fn();
  return opts;
}

} // namespace

TEST_CASE("after 3 failed LOGINs the right password is refused like a wrong "
          "one until the window ends",
          "[actors][throttle]") {
  manual_clock clock;
  fixture f{throttled(clock)};
  f.registry_must_register("alice", "right");
  for (int i = 0; i < 3; ++i)
    CHECK(outcome(f.registry_login("alice", "wrong"))
          == ko(errc::login_failed));
  CHECK(outcome(f.registry_login("alice", "right")) == ko(errc::login_failed));
  // Refusals do not extend the window: tried throughout it, the right
  // password is refused up to its last millisecond and gets in exactly
  // 200 ms after the third failure.
  for (int i = 0; i < 4; ++i) {
    clock.advance(49ms);
    INFO((i + 1) * 49 << " ms after the third failure");
    CHECK(outcome(f.registry_login("alice", "right"))
          == ko(errc::login_failed));
  }
  clock.advance(3ms);
  CHECK(outcome(f.registry_login("alice", "right")) == ko(errc::login_failed));
  clock.advance(1ms);
  CHECK(outcome(f.registry_login("alice", "right")) == "OK");
  // The success reset the count: one more failure is free again.
  CHECK(outcome(f.registry_login("alice", "wrong")) == ko(errc::login_failed));
  CHECK(outcome(f.registry_login("alice", "right")) == "OK");
}

TEST_CASE("a penalized LOGIN is answered without hashing",
          "[actors][throttle]") {
  manual_clock clock;
  fixture f{throttled(clock)};
  f.registry_must_register("bob", "right");
  for (int i = 0; i < 3; ++i)
    CHECK(outcome(f.registry_login("bob", "wrong")) == ko(errc::login_failed));
  // Without a hasher no LOGIN that needs a hash gets a verdict, so every
  // refusal below was decided without one (the clock stands still: the
  // window stays open however long they take).
  f.kill_and_wait(f.hasher);
  auto hashed = f.registry_login("nobody", "wrong");
  INFO("a LOGIN that needs a hash: " << outcome(hashed));
  CHECK_FALSE(hashed);
  CHECK(outcome(hashed) != ko(errc::login_failed));
  for (int i = 0; i < 20; ++i)
    CHECK(outcome(f.registry_login("bob", "right")) == ko(errc::login_failed));
}

TEST_CASE("an untrusted address is penalized across usernames but trusted ones "
          "are not",
          "[actors][throttle]") {
  manual_clock clock;
  fixture f{throttled(clock)};
  for (auto name : {"u1", "u2", "u3", "u4"})
    f.registry_must_register(name, "right");
  // Three users, one failure each, from one outside address.
  for (auto name : {"u1", "u2", "u3"})
    CHECK(outcome(f.registry_login(name, "wrong", "203.0.113.9"))
          == ko(errc::login_failed));
  CHECK(outcome(f.registry_login("u4", "right", "203.0.113.9"))
        == ko(errc::login_failed));
  // Another address, and loopback, are not affected.
  CHECK(outcome(f.registry_login("u4", "right", "198.51.100.7")) == "OK");
  for (auto name : {"u1", "u2", "u3"})
    CHECK(outcome(f.registry_login(name, "wrong", "127.0.0.1"))
          == ko(errc::login_failed));
  CHECK(outcome(f.registry_login("u4", "right", "127.0.0.2")) == "OK");
}
