// The connection broker's CAF behaviour; included only by the acceptor.
#pragma once

#include "caf/io/all.hpp"
#include "net/connection.hpp"

namespace smsp {

struct connection_state {
  connection_deps deps;
  caf::io::connection_handle hdl;
  framer frames;
  /// Requests read and not yet started, in arrival order.
  std::deque<frame> queued;
  /// Invariant: at most one request is with the actors at a time, so
  /// requests take effect and replies leave in the order they were sent.
  bool busy = false;
  command current = command::dump;
  terminator current_term = terminator::lf;
  bool reading = true;
  /// Waiting for the client to read its replies (see max_unsent).
  bool backlogged = false;
  static inline const char* name = "smsp.connection";
};

using connection_broker =
  caf::stateful_actor<connection_state, caf::io::broker>;

caf::behavior connection(connection_broker* self,
                         caf::io::connection_handle hdl, connection_deps deps);

} // namespace smsp
