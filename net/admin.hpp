// The admin listener: brokers serving smsp-admin's line protocol
// (net/wire/admin.hpp) on a loopback port, behind a token.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "actors/spawn.hpp"
#include "caf/actor.hpp"
#include "caf/expected.hpp"
#include "caf/fwd.hpp"

namespace smsp {

/// Admin connections served at once: an operator needs one or two; the
/// bound keeps local users who cannot authenticate from holding many.
inline constexpr size_t max_admin_connections = 8;

/// Descriptors the admin listener may hold: its socket and its connections
/// (the server keeps them free beside the SMSP connections' share).
inline constexpr size_t admin_descriptors = 1 + max_admin_connections;

/// What the admin connections ask, and the token they must present.
struct admin_deps {
  registry_actor registry;
  imq_actor imq;
  writer_actor writer;
  reader_actor reader;
  /// The SMSP acceptor (net/acceptor.hpp), asked for its live connections;
  /// none: STATS reports 0 connections.
  caf::actor acceptor;
  /// token_chars lowercase hex digits (new_admin_token()).
  std::string token;
  /// When the server started (STATS' uptime).
  std::chrono::steady_clock::time_point started
    = std::chrono::steady_clock::now();
  /// Each request's deadline: waits.request, plus waits.hashing for PASSWD
  /// and DELETE (a hash, or the user's writes under way, come first).
  timeouts waits;
};

/// A fresh token: 32 bytes from libsodium's CSPRNG as 64 lowercase hex
/// digits (libsodium must be initialized: init_crypto()).
std::string new_admin_token();

/// Binds host:port (0 picks a free port) and serves admin connections
/// there, at most 8 at once (one more gets an ERR line and is closed).
/// Returns the admin acceptor broker and the bound port; fails when the
/// address cannot be bound.
struct admin_listener {
  caf::actor acceptor;
  uint16_t port = 0;
};
caf::expected<admin_listener>
listen_admin(caf::actor_system& sys, admin_deps deps, const std::string& host,
             uint16_t port);

/// Stops accepting, closes every admin connection and waits (at most 10 s)
/// until they are gone.
void stop_admin(const caf::actor& acceptor);

} // namespace smsp
