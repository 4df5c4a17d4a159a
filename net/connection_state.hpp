// The connection broker's state and behaviour (for the acceptor only).
#pragma once

#include <chrono>
#include <deque>
#include <optional>

#include "caf/io/all.hpp"
#include "net/connection.hpp"

namespace smsp {

/// A request handed to the actors, until its reply is written.
struct started_request {
  terminator term;
  command cmd;
  std::chrono::steady_clock::time_point deadline;
  /// Set when the answer is known; written once every older one is.
  std::optional<std::string> reply;
};

struct connection_state {
  connection_deps deps;
  caf::io::connection_handle hdl;
  framer frames;
  /// Requests read and not yet started, in arrival order.
  std::deque<frame> queued;
  /// Started requests, oldest first, numbered consecutively from
  /// `first_seq`. Replies are written strictly from the front, so they
  /// leave in request order whatever order the actors answer in.
  std::deque<started_request> started;
  uint64_t first_seq = 0;
  /// A started request that later ones must see completed (REGISTER,
  /// LOGIN, STORE) is unanswered: start nothing more until it is.
  bool barrier = false;
  /// A DUMP waiting for the requests before it (see on_dump).
  std::optional<uint64_t> dump_waiting;
  bool reading = true;
  /// The last switch of `reading` may not have taken effect yet.
  bool reading_settling = false;
  /// Waiting for the client to read its replies (see max_unsent).
  bool backlogged = false;
  bool watchdog_armed = false;
  /// When the connection last wrote a reply (so received a complete
  /// request), or was last seen busy: the idle clock, read when the acceptor
  /// asks (see connection.cpp, check_idle).
  std::chrono::steady_clock::time_point last_activity;
  static inline const char* name = "smsp.connection";
};

using connection_broker
  = caf::stateful_actor<connection_state, caf::io::broker>;

caf::behavior connection(connection_broker* self,
                         caf::io::connection_handle hdl, connection_deps deps);

} // namespace smsp
