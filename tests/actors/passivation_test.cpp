// Passivation tests: idle mailboxes stop and their mail loads again.
#include "tests/actors/fixture.hpp"

#include <chrono>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;
using namespace std::chrono_literals;

TEST_CASE("idle mailboxes are passivated and load their mail on the next "
          "request",
          "[actors][passivation]") {
  options opts;
  opts.registry.mailbox_idle = 300ms;
  fixture f{opts};
  constexpr uint64_t n = 50;
  auto name = [](uint64_t u) { return "u" + std::to_string(u); };
  auto text = [](uint64_t u) { return "mail of u" + std::to_string(u); };
  std::vector<std::string> cookies;
  for (uint64_t u = 0; u < n; ++u)
    cookies.push_back(f.registry_must_register(name(u), "pw"));
  auto& self = f.self;
  using ok_handle
    = decltype(self->request(f.registry, request_timeout, post_atom::value,
                             std::string{}, std::string{}));
  // Posting touches no mailbox; each user's STORE activates its own one.
  std::vector<ok_handle> pending;
  for (uint64_t u = 0; u < n; ++u)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       post_atom::value, cookies[u], text(u)));
  for (auto& h : pending)
    REQUIRE(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  pending.clear();
  auto started = std::chrono::steady_clock::now();
  for (uint64_t u = 0; u < n; ++u)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       store_atom::value, cookies[u], name(u)));
  for (auto& h : pending)
    REQUIRE(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  auto touched = f.registry_stats();
  auto elapsed = std::chrono::steady_clock::now() - started;
  CHECK(touched.activations == n);
  CHECK(touched.active + touched.passivations == n);
  // All 50 are active unless this machine took longer than the idle time.
  if (elapsed < opts.registry.mailbox_idle)
    CHECK(touched.active == n);
  // Past the idle time every one of them stops.
  REQUIRE(wait_until([&] { return f.registry_stats().active == 0; }));
  auto idle = f.registry_stats();
  CHECK(idle.passivations == n);
  CHECK(idle.activations == n);
  for (uint64_t u = 0; u < n; ++u)
    CHECK(f.stored_mailbox(name(u)) == std::vector<std::string>{text(u)});
  // The next requests find the mail intact.
  using count_handle
    = decltype(self->request(f.registry, request_timeout, count_atom::value,
                             std::string{}, std::string{}));
  using text_handle
    = decltype(self->request(f.registry, request_timeout, caf::get_atom::value,
                             std::string{}, std::string{}));
  std::vector<count_handle> counts;
  std::vector<text_handle> texts;
  for (uint64_t u = 0; u < n; ++u) {
    counts.emplace_back(self->request(f.registry, request_timeout,
                                      count_atom::value, cookies[u], name(u)));
    texts.emplace_back(self->request(
      f.registry, request_timeout, caf::get_atom::value, cookies[u], name(u)));
  }
  for (uint64_t u = 0; u < n; ++u) {
    INFO("user " << name(u));
    CHECK(must(await_reply<uint64_t>(counts[u])) == 1u);
    CHECK(must(await_reply<std::string>(texts[u])) == text(u));
  }
  auto woken = f.registry_stats();
  CHECK(woken.activations >= 2 * n);
  CHECK(woken.activations == woken.active + woken.passivations);
}

TEST_CASE("requests racing passivations lose and duplicate no message",
          "[actors][passivation]") {
  // Retired after 20 ms without requests (swept every 10 ms): the mailbox
  // stops and starts again many times during the test.
  options opts;
  opts.registry.mailbox_idle = 20ms;
  fixture f{opts};
  auto alice = f.registry_must_register("alice", "s3cret");
  auto& self = f.self;
  auto& reg = f.registry;
  std::deque<std::string> model;
  auto check_model = [&](int round) {
    INFO("round " << round);
    auto counted = self->request(reg, request_timeout, count_atom::value, alice,
                                 "alice"s);
    auto first = self->request(reg, request_timeout, caf::get_atom::value,
                               alice, "alice"s);
    CHECK(must(await_reply<uint64_t>(counted)) == model.size());
    auto text = await_reply<std::string>(first);
    if (model.empty())
      CHECK(outcome(text) == ko(errc::mailbox_empty));
    else
      CHECK(must(text) == model.front());
  };
  std::minstd_rand rng{42};
  std::uniform_int_distribution<int> pause_ms{0, 45};
  constexpr int rounds = 100;
  for (int round = 0; round < rounds; ++round) {
    INFO("round " << round);
    auto text = "m" + std::to_string(round);
    REQUIRE(outcome(f.registry_post(alice, text)) == "OK");
    if (round % 10 == 4 || round % 10 == 9) {
      // A write under way while the mailbox is passivated and a request
      // activates its successor: the write's commit is held back by a
      // lock, so the successor must wait for it before loading.
      bool storing = round % 10 == 4;
      write_lock lock{f.db_file()};
      auto write = storing
                     ? self->request(reg, request_timeout, store_atom::value,
                                     alice, "alice"s)
                     : self->request(reg, request_timeout,
                                     caf::delete_atom::value, alice, "alice"s);
      // Counted after the write reached the registry: a later passivation
      // is of the mailbox that has this write under way.
      auto before = f.registry_stats().passivations;
      REQUIRE(wait_until(
        [&] { return f.registry_stats().passivations > before; }, 2s));
      auto counted = self->request(reg, request_timeout, count_atom::value,
                                   alice, "alice"s);
      auto first = self->request(reg, request_timeout, caf::get_atom::value,
                                 alice, "alice"s);
      std::this_thread::sleep_for(10ms);
      lock.release();
      REQUIRE(outcome(await_reply<caf::ok_atom>(write)) == "OK");
      if (storing)
        model.push_back(text);
      else
        model.pop_front();
      CHECK(must(await_reply<uint64_t>(counted)) == model.size());
      CHECK(must(await_reply<std::string>(first)) == model.front());
      if (!storing) {
        // The message posted this round is still queued: store it now.
        REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
        model.push_back(text);
      }
    } else {
      // STORE is a barrier (the connection waits for its reply); the
      // reads and deletes behind it are pipelined.
      REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
      model.push_back(text);
      check_model(round);
      if (round % 3 == 2) {
        auto first = self->request(reg, request_timeout, caf::get_atom::value,
                                   alice, "alice"s);
        auto deleted = self->request(reg, request_timeout,
                                     caf::delete_atom::value, alice, "alice"s);
        CHECK(must(await_reply<std::string>(first)) == model.front());
        CHECK(outcome(await_reply<caf::ok_atom>(deleted)) == "OK");
        model.pop_front();
        check_model(round);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{pause_ms(rng)});
  }
  auto figures = f.registry_stats();
  INFO(figures.passivations << " passivations");
  // The race did happen, many times.
  CHECK(figures.passivations >= 20u);
  CHECK(figures.activations == figures.active + figures.passivations);
  std::vector<std::string> expected(model.begin(), model.end());
  CHECK(f.stored_mailbox("alice") == expected);
  CHECK(f.imq_count() == 0u);
  CHECK(f.registry_drain(alice, "alice") == expected);
}
