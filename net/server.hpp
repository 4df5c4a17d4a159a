// Starting and stopping a whole smsp-actors server inside an actor system.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "actors/spawn.hpp"
#include "caf/actor.hpp"
#include "caf/expected.hpp"
#include "net/connection.hpp"

namespace smsp {

struct server_config {
  /// Address to listen on; 0.0.0.0 serves other machines.
  std::string host = "127.0.0.1";
  /// 0 picks a free port.
  uint16_t port = 5000;
  hasher_config hashing;
  /// Durable data: created if missing, locked while the server runs.
  std::string data_dir = "./smsp-data";
  sync_mode sync = sync_mode::full;
  /// Longest wait of a group commit for more writes; see spawn_writer.
  std::chrono::microseconds commit_delay{0};
  /// Passivation, account cache and per-user limits (its waits and data
  /// dir are filled in by start_server).
  registry_config registry;
  /// Limits and waits of every connection (its registry handle is filled in
  /// by start_server).
  connection_deps connections;
};

/// The actors of a running server.
struct server {
  caf::actor acceptor;
  registry_actor registry;
  imq_actor imq;
  hasher_actor hasher;
  writer_actor writer;
  reader_actor reader;
  /// The port actually bound.
  uint16_t port = 0;
};

/// A listening socket and the acceptor broker that serves it.
struct listener {
  caf::actor acceptor;
  /// The port actually bound.
  uint16_t port = 0;
};

/// Binds host:port (0 picks a free port) and serves every connection on it
/// with `deps`. Fails when the address cannot be bound.
caf::expected<listener> listen(caf::actor_system& sys, connection_deps deps,
                               const std::string& host, uint16_t port);

/// Stops accepting, stops every connection and waits (at most 10 s) until
/// they are gone.
void stop_listening(const caf::actor& acceptor);

/// Opens the data dir, recovers the IMQ, spawns the actors and binds the
/// listening socket; fails when the address cannot be bound (e.g. the port
/// is in use) or libsodium cannot start. Throws store_error when the data
/// dir cannot be used (not writable, locked by another server, not ours).
caf::expected<server> start_server(caf::actor_system& sys,
                                   const server_config& cfg);

/// Closes the listening socket and every connection and stops the actors.
void stop_server(const server& srv);

} // namespace smsp
