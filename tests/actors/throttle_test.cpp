// Throttle tests: the registry's brute-force penalty on LOGIN.
#include "tests/actors/fixture.hpp"

#include <chrono>
#include <string>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

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
  f.registry_must_register("alice", "right");
  for (int i = 0; i < 3; ++i)
    CHECK(outcome(f.registry_login("alice", "wrong"))
          == ko(errc::login_failed));
  auto refused_at = std::chrono::steady_clock::now();
  CHECK(outcome(f.registry_login("alice", "right")) == ko(errc::login_failed));
  // Refusals do not extend the window: keep trying, the right password
  // gets in once 200 ms after the third failure have passed.
  std::string result;
  do {
    result = outcome(f.registry_login("alice", "right"));
  } while (result != "OK"
           && std::chrono::steady_clock::now() - refused_at
                < std::chrono::seconds{5});
  auto waited = std::chrono::steady_clock::now() - refused_at;
  CHECK(result == "OK");
  CHECK(waited < std::chrono::milliseconds{600});
  // The success reset the count: one more failure is free again.
  CHECK(outcome(f.registry_login("alice", "wrong")) == ko(errc::login_failed));
  CHECK(outcome(f.registry_login("alice", "right")) == "OK");
}

TEST_CASE("a penalized LOGIN is answered without hashing",
          "[actors][throttle]") {
  // The registry's one hash worker at the real cost: a hashed LOGIN takes
  // tens of milliseconds, so 20 of them could not come back quickly.
  auto opts = throttled();
  opts.hashing = hasher_config{pwhash_cost::interactive, 1, 8};
  fixture f{opts};
  f.registry_must_register("bob", "right");
  for (int i = 0; i < 3; ++i)
    CHECK(outcome(f.registry_login("bob", "wrong")) == ko(errc::login_failed));
  auto hashed_start = std::chrono::steady_clock::now();
  CHECK(outcome(f.registry_login("nobody", "wrong")) == ko(errc::login_failed));
  auto one_hash = std::chrono::steady_clock::now() - hashed_start;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i)
    CHECK(outcome(f.registry_login("bob", "right")) == ko(errc::login_failed));
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
