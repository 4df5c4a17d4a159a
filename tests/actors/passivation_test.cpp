// Passivation tests: idle mailboxes stop and their mail loads again. The
// registry reads a manual clock and its sweep is run by hand, so a mailbox
// is idle exactly when a test says, whatever the machine's speed. (The idle
// time is a minute on that clock: the registry's own sweep, once a second
// of real time, then finds nothing the test did not mean.)
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
  manual_clock clock;
  options opts;
  opts.registry.mailbox_idle = 1min;
  opts.registry.now = clock.fn();
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
  for (uint64_t u = 0; u < n; ++u)
    pending.emplace_back(self->request(f.registry, request_timeout,
                                       store_atom::value, cookies[u], name(u)));
  for (auto& h : pending)
    REQUIRE(outcome(await_reply<caf::ok_atom>(h)) == "OK");
  // No time has passed on the registry's clock: all 50 are active.
  auto touched = f.registry_sweep();
  CHECK(touched.activations == n);
  CHECK(touched.active == n);
  CHECK(touched.passivations == 0u);
  // A millisecond short of the idle time, none of them stops.
  auto early = f.registry_sweep_after(clock, opts.registry.mailbox_idle - 1ms);
  CHECK(early.active == n);
  CHECK(early.passivations == 0u);
  // At the idle time every one of them stops.
  auto idle = f.registry_sweep_after(clock, 1ms);
  CHECK(idle.active == 0u);
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
  // Each user's COUNT activated a new mailbox, which its GET found.
  auto woken = f.registry_stats();
  CHECK(woken.activations == 2 * n);
  CHECK(woken.active == n);
  CHECK(woken.passivations == n);
}

TEST_CASE("requests racing passivations lose and duplicate no message",
          "[actors][passivation]") {
  // The mailbox is passivated at points chosen by a seeded generator: before
  // a barrier, in between pipelined requests (the retirement reaches the
  // old mailbox behind requests it has not answered yet, and the requests
  // after it go to a successor that must wait for it), and while one of its
  // writes cannot commit.
  manual_clock clock;
  options opts;
  opts.registry.mailbox_idle = 1min;
  opts.registry.now = clock.fn();
  fixture f{opts};
  auto alice = f.registry_must_register("alice", "s3cret");
  auto& self = f.self;
  auto& reg = f.registry;
  std::deque<std::string> model;
  // Requests routed to alice's mailbox since the last sweep: a sweep then
  // passivates it (exactly once), else it has none to passivate.
  bool touched = false;
  uint64_t expected_passivations = 0;
  auto passivate = [&] {
    auto before = f.registry_stats();
    auto after = f.registry_sweep_after(clock, opts.registry.mailbox_idle);
    uint64_t expected = touched ? 1 : 0;
    CHECK(after.passivations - before.passivations == expected);
    CHECK(after.active == 0u);
    expected_passivations += expected;
    touched = false;
  };
  std::minstd_rand rng{42};
  // Where a passivation goes in a pipeline of two requests: before, in
  // between, after, or nowhere.
  std::uniform_int_distribution<int> slot{0, 3};
  auto check_model = [&](int round) {
    INFO("round " << round);
    auto at = slot(rng);
    if (at == 0)
      passivate();
    auto counted = self->request(reg, request_timeout, count_atom::value, alice,
                                 "alice"s);
    touched = true;
    if (at == 1)
      passivate();
    auto first = self->request(reg, request_timeout, caf::get_atom::value,
                               alice, "alice"s);
    touched = true;
    if (at == 2)
      passivate();
    CHECK(must(await_reply<uint64_t>(counted)) == model.size());
    auto text = await_reply<std::string>(first);
    if (model.empty())
      CHECK(outcome(text) == ko(errc::mailbox_empty));
    else
      CHECK(must(text) == model.front());
  };
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
      touched = true;
      // The write reached the mailbox before its retirement.
      passivate();
      auto counted = self->request(reg, request_timeout, count_atom::value,
                                   alice, "alice"s);
      auto first = self->request(reg, request_timeout, caf::get_atom::value,
                                 alice, "alice"s);
      touched = true;
      // Not a wait for anything: a successor that wrongly did not wait for
      // its predecessor gets this long to load and answer before the write
      // commits (and then fails the checks below). A correct one passes
      // however long this takes.
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
        if (slot(rng) == 0)
          passivate();
        REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
        touched = true;
        model.push_back(text);
      }
    } else {
      // A STORE answered, then reads and deletes pipelined.
      if (slot(rng) == 0)
        passivate();
      REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
      touched = true;
      model.push_back(text);
      check_model(round);
      if (round % 3 == 2) {
        auto at = slot(rng);
        if (at == 0)
          passivate();
        auto first = self->request(reg, request_timeout, caf::get_atom::value,
                                   alice, "alice"s);
        touched = true;
        if (at == 1)
          passivate();
        auto deleted = self->request(reg, request_timeout,
                                     caf::delete_atom::value, alice, "alice"s);
        touched = true;
        if (at == 2)
          passivate();
        CHECK(must(await_reply<std::string>(first)) == model.front());
        CHECK(outcome(await_reply<caf::ok_atom>(deleted)) == "OK");
        model.pop_front();
        check_model(round);
      }
    }
  }
  auto figures = f.registry_stats();
  INFO(figures.passivations << " passivations");
  // The race happened at every point chosen, and only there.
  CHECK(figures.passivations == expected_passivations);
  CHECK(expected_passivations >= 50u);
  CHECK(figures.activations == figures.active + figures.passivations);
  std::vector<std::string> expected(model.begin(), model.end());
  CHECK(f.stored_mailbox("alice") == expected);
  CHECK(f.imq_count() == 0u);
  CHECK(f.registry_drain(alice, "alice") == expected);
}
