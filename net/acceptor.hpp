// The acceptor broker: the listening socket, the live connections and the
// server-wide budget of unsent replies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "caf/actor.hpp"
#include "caf/expected.hpp"
#include "caf/fwd.hpp"
#include "net/connection.hpp"

namespace smsp {

struct acceptor_config {
  /// Connections served at once. One more gets `KO server busy` and is
  /// closed at once. Each connection is a file descriptor: the server lowers
  /// this to what the descriptor limit allows (app/server.hpp).
  size_t max_connections = 10000;
  /// Reply bytes all connections together may hold beyond each one's free
  /// allowance (its longest possible reply): when they are out, connections
  /// whose clients do not read wait for them, and stop reading requests.
  size_t max_unsent_total = 64 * 1024 * 1024;
  /// What every connection gets.
  connection_config connection;
  /// Where connections report their request figures; none: they count
  /// nothing (metrics are off).
  metrics_actor metrics;
};

/// A listening socket and the acceptor broker that serves it.
struct listener {
  caf::actor acceptor;
  /// The acceptor's figures, for the metrics endpoint.
  acceptor_metrics_actor metrics;
  /// The port actually bound.
  uint16_t port = 0;
};

/// Binds host:port (0 picks a free port) and serves every connection on it,
/// each asking `registry`. Fails when the address cannot be bound.
caf::expected<listener> listen(caf::actor_system& sys, registry_actor registry,
                               acceptor_config cfg, const std::string& host,
                               uint16_t port);

/// Stops accepting, stops every connection and waits (at most 10 s) until
/// they are gone.
void stop_listening(const caf::actor& acceptor);

} // namespace smsp
