// Spawn functions for smsp-actors' actors; their messages live in messages.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "actors/credentials.hpp"
#include "actors/messages.hpp"
#include "caf/fwd.hpp"

namespace smsp {

/// How long an actor waits for another before answering `KO internal error`.
struct timeouts {
  /// Plain requests between in-memory actors.
  std::chrono::milliseconds request{std::chrono::seconds{10}};
  /// Requests that wait for a password hash, queue time included.
  std::chrono::milliseconds hashing{std::chrono::seconds{120}};
};

struct hasher_config {
  pwhash_cost cost = pwhash_cost::interactive;
  /// Hashes running at once, each on its own thread (and with its own
  /// 64-256 MiB of memory at the real costs).
  size_t workers = 2;
  /// Hash requests waiting beyond this get errc::server_busy.
  size_t max_queue = 1024;
};

/// A pool of detached Argon2id workers behind one queue.
hasher_actor spawn_hasher(caf::actor_system& sys, const hasher_config& cfg);

/// An empty mailbox for `owner`.
mailbox_actor spawn_mailbox(caf::actor_system& sys, std::string owner);

/// The incoming message queue.
imq_actor spawn_imq(caf::actor_system& sys, timeouts limits = {});

/// The registry of accounts and sessions; it owns the mailbox directory and
/// stops the mailboxes when it stops.
registry_actor spawn_registry(caf::actor_system& sys, hasher_actor hasher,
                              imq_actor imq, timeouts limits = {});

} // namespace smsp
