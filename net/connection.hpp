// What a connection broker needs: its limits, waits and clock, and the
// actors it talks to.
#pragma once

#include <chrono>
#include <cstddef>

#include "actors/logic/clock.hpp"
#include "actors/spawn.hpp"
#include "caf/actor.hpp"
#include "net/wire/codec.hpp"

namespace smsp {

/// Limits, waits and clock of every connection; the same for all of them.
struct connection_config {
  wire_limits wire;
  /// Reply bytes one connection may have outstanding: written to CAF but not
  /// yet to the socket, plus the most its unanswered requests may still
  /// produce. A request starts only if its longest possible reply fits (one
  /// request always may when nothing is outstanding); otherwise reading
  /// pauses until the client reads its replies.
  size_t max_unsent = 256 * 1024;
  /// Requests read but not yet started (count, and their bytes) before the
  /// connection stops reading.
  size_t max_queued = 4096;
  size_t max_queued_bytes = 16 * 1024;
  /// Requests with the actors at once; more wait in the queue.
  size_t max_in_flight = 64;
  /// A request unanswered after its wait (waits.request, or waits.hashing
  /// plus waits.request for REGISTER and LOGIN) gets `KO internal error`.
  timeouts waits;
  /// How often a connection with requests in flight checks their deadlines.
  std::chrono::milliseconds watchdog_interval{std::chrono::seconds{1}};
  /// Closes a connection that makes no progress for this long (its session
  /// stays valid): with nothing in flight, no complete request received
  /// (bytes of an unfinished one do not count, so a slowloris is closed
  /// too); or with replies outstanding, none of their bytes taken by the
  /// client. The acceptor asks every tenth of it, so the close comes within
  /// 1.1 times it. 600 s is POP3's minimum autologout timer (RFC 1939).
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{600}};
  /// Where deadlines and the idle rule read the time.
  clock_fn now = steady_clock_fn();
  /// A connection with requests counted and not yet reported reports them
  /// this long after the first of them (so at most about once per this
  /// while busy, and never while idle), and at its close.
  std::chrono::milliseconds report_interval{std::chrono::seconds{1}};
  /// Mailboxes live on mailbox nodes: STORE holds later requests until it
  /// is answered (ordering::barrier_with_nodes).
  bool mailboxes_on_nodes = false;
};

/// What every connection broker gets from the acceptor that forks it.
struct connection_deps {
  /// Every request goes here; see registry_actor.
  registry_actor registry;
  /// The acceptor, which owns the server-wide budget of outstanding reply
  /// bytes (grant_atom, release_atom in messages.hpp).
  caf::actor budget;
  connection_config cfg;
  /// Where the connection reports what its requests came to and how long
  /// they took (report_atom); none: it counts nothing.
  metrics_actor metrics;
};

} // namespace smsp
