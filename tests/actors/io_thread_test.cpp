// Actors on CAF's I/O thread (actors/io_thread.hpp): where they run, and the
// registry, IMQ and mailboxes serving requests from there as in the server.
#include "tests/actors/fixture.hpp"

#include <string>
#include <thread>
#include <tuple>

#include "actors/io_thread.hpp"
#include "caf/all.hpp"
#include "caf/io/network/multiplexer.hpp"

using namespace smsp;
using namespace smsp::testing;
using namespace std::chrono_literals;

namespace {

/// Counts the numbers it is sent; answers whether it ran on the I/O thread
/// every time and saw 1, 2, 3, ... in order.
using io_probe_actor
  = caf::typed_actor<caf::reacts_to<uint64_t>,
                     caf::replies_to<caf::get_atom>::with<bool, bool>>;

struct io_probe_state {
  std::thread::id io_thread;
  uint64_t next = 1;
  bool in_order = true;
  bool on_io_thread = true;
};

using io_probe_pointer = io_thread_actor<io_probe_state, io_probe_actor>*;

io_probe_actor::behavior_type io_probe(io_probe_pointer self,
                                       std::thread::id io_thread) {
  self->state.io_thread = io_thread;
  auto here = [self] {
    auto& st = self->state;
    st.on_io_thread &= std::this_thread::get_id() == st.io_thread;
  };
  return {
    [=](uint64_t x) {
      here();
      auto& st = self->state;
      st.in_order &= x == st.next;
      ++st.next;
    },
    [=](caf::get_atom) {
      here();
      return std::make_tuple(self->state.on_io_thread, self->state.in_order);
    },
  };
}

/// {ran on the I/O thread every time, saw its numbers in order}.
std::tuple<bool, bool> io_probe_result(fixture& f,
                                       const io_probe_actor& probe) {
  std::tuple<bool, bool> result{false, false};
  f.self->request(probe, caf::infinite, caf::get_atom::value)
    .receive(
      [&](bool on_io, bool in_order) {
        result = {on_io, in_order};
      },
      [&](caf::error& err) { FAIL(f.sys.render(err)); });
  return result;
}

} // namespace

TEST_CASE("an actor hosted by the I/O thread runs there, messages in order",
          "[actors]") {
  fixture f;
  auto io = io_thread_of(f.sys);
  auto on_io = spawn_on(f.sys, io, io_probe, io->thread_id());
  auto elsewhere = spawn_on(f.sys, nullptr, io_probe, io->thread_id());
  // From this thread, and from the clock's thread (delayed messages arrive
  // from there): either way the I/O thread runs the actor.
  constexpr uint64_t n = 1000;
  for (uint64_t i = 1; i <= n; ++i) {
    f.self->send(on_io, i);
    f.self->send(elsewhere, i);
  }
  caf::delayed_anon_send(on_io, 1ms, n + 1);
  caf::delayed_anon_send(elsewhere, 1ms, n + 1);
  std::this_thread::sleep_for(20ms);
  // The delayed messages may still be on their way on a busy machine: the
  // order check covers them only if they arrived.
  CHECK(io_probe_result(f, on_io) == std::make_tuple(true, true));
  // Without a host it is a plain actor on the scheduler's threads.
  CHECK(std::get<0>(io_probe_result(f, elsewhere)) == false);
  CHECK(f.stop_actor(on_io));
  CHECK(f.stop_actor(elsewhere));
}

TEST_CASE("the registry, IMQ and mailboxes serve the mail cycle from the I/O "
          "thread, durably",
          "[actors]") {
  options o;
  o.on_io_thread = true;
  fixture f{o};
  auto alice = f.registry_must_register("alice", "s3cret");
  auto bob = f.registry_must_register("bob", "hunter22");
  for (int i = 0; i < 3; ++i) {
    REQUIRE(outcome(f.registry_post(alice, "to bob " + std::to_string(i)))
            == "OK");
    REQUIRE(outcome(f.registry_store(alice, "bob")) == "OK");
  }
  REQUIRE(outcome(f.registry_post(alice, "note to self")) == "OK");
  REQUIRE(outcome(f.registry_store(alice, "alice")) == "OK");
  CHECK(must(f.registry_count(bob, "bob")) == 3u);
  CHECK(must(f.registry_get(bob, "bob")) == "to bob 0");
  REQUIRE(outcome(f.registry_delete(bob, "bob")) == "OK");
  CHECK(must(f.registry_get(bob, "bob")) == "to bob 1");
  CHECK(must(f.registry_count(alice, "alice")) == 1u);
  CHECK(outcome(f.registry_store(alice, "alice"))
        == ko(errc::nothing_to_store));
  f.restart();
  alice = must(f.registry_login("alice", "s3cret"));
  bob = must(f.registry_login("bob", "hunter22"));
  CHECK(must(f.registry_count(bob, "bob")) == 2u);
  CHECK(f.registry_drain(bob, "bob")
        == std::vector<std::string>{"to bob 1", "to bob 2"});
  CHECK(must(f.registry_get(alice, "alice")) == "note to self");
}
