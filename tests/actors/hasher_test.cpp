// Hasher pool tests: hashing, verifying and a full queue.
#include "tests/actors/fixture.hpp"

#include <string>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("hasher returns verifiable hashes and verifies them", "[actors]") {
  fixture f;
  auto hash = f.ask_hasher<std::string>(f.hasher, hash_atom::value,
                                        std::string{"s3cret"});
  REQUIRE(outcome(hash) == "OK");
  CHECK(hash->rfind("$argon2id$", 0) == 0);
  CHECK(verify_password(*hash, "s3cret"));
  auto right = f.ask_hasher<bool>(f.hasher, verify_atom::value, *hash,
                                  std::string{"s3cret"});
  REQUIRE(outcome(right) == "OK");
  CHECK(*right);
  auto wrong = f.ask_hasher<bool>(f.hasher, verify_atom::value, *hash,
                                  std::string{"secret"});
  REQUIRE(outcome(wrong) == "OK");
  CHECK_FALSE(*wrong);
  auto garbage = f.ask_hasher<bool>(f.hasher, verify_atom::value,
                                    std::string{"garbage"},
                                    std::string{"s3cret"});
  REQUIRE(outcome(garbage) == "OK");
  CHECK_FALSE(*garbage);
}

TEST_CASE("a full hasher queue answers server_busy", "[actors]") {
  fixture f;
  auto pool = f.spawn_hasher(hasher_config{pwhash_cost::min, 1, 2});
  constexpr int n = 10;
  using handle_type = decltype(f.self->request(
    pool, request_timeout, hash_atom::value, std::string{}));
  std::vector<handle_type> pending;
  {
    // All ten are in the pool's mailbox before it handles the first, so no
    // hash can finish in between, however fast it is: one goes to the
    // worker, two wait in the queue, the other seven are refused.
    scheduler_pause pause{f.sys, scheduler_threads};
    for (int i = 0; i < n; ++i)
      pending.emplace_back(f.self->request(
        pool, request_timeout, hash_atom::value, "pw" + std::to_string(i)));
  }
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
  // One running and two queued are accepted, the rest refused.
  CHECK(accepted == 3);
  CHECK(busy == n - 3);
  // Once the queue drained, the pool accepts work again.
  auto later = f.ask_hasher<std::string>(pool, hash_atom::value,
                                         std::string{"later"});
  REQUIRE(outcome(later) == "OK");
  CHECK(verify_password(*later, "later"));
  f.self->send_exit(pool, caf::exit_reason::user_shutdown);
}
