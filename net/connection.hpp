// What a connection broker needs: the registry handle, limits and waits.
#pragma once

#include <chrono>
#include <cstddef>

#include "actors/spawn.hpp"
#include "net/wire/codec.hpp"

namespace smsp {

/// What every connection broker needs; the same for all of them.
struct connection_deps {
  /// Every request goes here; see registry_actor.
  registry_actor registry;
  wire_limits limits;
  /// Reply bytes a client may leave unread before its connection stops
  /// reading (and so stops taking requests) until it catches up.
  size_t max_unsent = 1024 * 1024;
  /// Requests read but not yet started before the connection stops reading.
  size_t max_queued = 4096;
  /// Requests with the actors at once; more wait in the queue.
  size_t max_in_flight = 64;
  /// A request unanswered after its wait (waits.request, or waits.hashing
  /// plus waits.request for REGISTER and LOGIN) gets `KO internal error`.
  timeouts waits;
  /// How often a connection with requests in flight checks their deadlines.
  std::chrono::milliseconds watchdog_interval{std::chrono::seconds{1}};
  /// A connection with no complete request and no reply written for this
  /// long, and nothing in flight or unwritten, is closed (its session stays
  /// valid). Bytes of an unfinished request do not count, so a client that
  /// trickles a line and never ends it is closed too. The acceptor checks
  /// every tenth of it, so the close comes within 1.1 times it. 600 s is
  /// POP3's minimum autologout timer (RFC 1939).
  std::chrono::milliseconds idle_timeout{std::chrono::seconds{600}};
  /// Read by the acceptor, not by the connections: connections served at
  /// once. One more gets `KO server busy` and is closed.
  size_t max_connections = 10000;
};

} // namespace smsp
