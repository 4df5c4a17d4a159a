// What a connection broker needs: the registry handle, limits and waits.
#pragma once

#include <cstddef>

#include "actors/actors.hpp"
#include "net/codec.hpp"

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
};

} // namespace smsp
