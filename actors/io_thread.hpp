// Stateful typed actors that may run on CAF's I/O thread, beside the brokers.
#pragma once

#include <type_traits>
#include <utility>

#include "caf/actor_config.hpp"
#include "caf/actor_system.hpp"
#include "caf/execution_unit.hpp"
#include "caf/io/middleman.hpp"
#include "caf/io/network/multiplexer.hpp"
#include "caf/mailbox_element.hpp"
#include "caf/resumable.hpp"

#include "actors/spawn.hpp"

namespace smsp {

/// The I/O thread of `sys`, which must have loaded the middleman.
inline actor_host io_thread_of(caf::actor_system& sys) {
  return &sys.middleman().backend();
}

/// The state `State` of an actor with handle type `Handle`, run by the
/// multiplexer given as the actor_config's host, like a broker without
/// connections: every message is queued to that multiplexer, which resumes
/// the actor on its thread. Invariant: with a host, the actor runs only
/// there, so it is still one thread at a time and the actor model's
/// guarantees (one owner, messages in order per sender) are unchanged.
/// Without a multiplexer as host it is a plain scheduled actor.
template <class State, class Handle>
class io_thread_actor : public Handle::template stateful_base<State> {
public:
  using super = typename Handle::template stateful_base<State>;

  template <class... Ts>
  explicit io_thread_actor(caf::actor_config& cfg, Ts&&... xs)
    : super(cfg, std::forward<Ts>(xs)...),
      host_(dynamic_cast<caf::io::network::multiplexer*>(cfg.host)) {
    // nop
  }

  caf::resumable::subtype_t subtype() const override {
    // The multiplexer resumes io_actors itself; others it passes on to
    // the scheduler.
    return host_ != nullptr ? caf::resumable::io_actor : super::subtype();
  }

  void enqueue(caf::mailbox_element_ptr ptr, caf::execution_unit* eu) override {
    super::enqueue(std::move(ptr), host_ != nullptr ? host_ : eu);
  }

  void launch(caf::execution_unit* eu, bool lazy, bool hide) override {
    super::launch(host_ != nullptr ? host_ : eu, lazy, hide);
  }

private:
  actor_host host_;
};

/// Spawns the actor of function `fun` (whose first parameter is an
/// io_thread_actor pointer) on `host`, or on the scheduler when null.
template <class F, class... Ts>
auto spawn_on(caf::actor_system& sys, actor_host host, F fun, Ts&&... xs) {
  caf::actor_config cfg{host};
  return sys.spawn_functor<caf::no_spawn_options>(std::true_type{}, cfg, fun,
                                                  std::forward<Ts>(xs)...);
}

} // namespace smsp
