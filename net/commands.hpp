// The server's row for each SMSP command: its handler, how it orders itself
// against later requests, its deadline and how long its reply may be.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "net/connection_state.hpp"
#include "net/wire/codec.hpp"

namespace smsp {

/// How a request orders itself against the later requests of its connection.
enum class ordering : uint8_t {
  /// Later requests start at once. The request travels connection ->
  /// registry -> one owner, and CAF delivers the messages of one sender to
  /// one receiver in the order sent, so later requests see its effect.
  pipelined,
  /// Later requests start only once it is answered: its effect reaches them
  /// by a longer path (REGISTER and LOGIN finish after a password hash and
  /// start the sessions that later requests use, DUMP reads the store).
  barrier,
  /// STORE: pipelined while every mailbox is in this process (the registry
  /// hands it to the IMQ and announces it to the target mailbox, each in
  /// order; see docs/ARCHITECTURE.md); a barrier with mailbox nodes, where
  /// the move reaches the node from the IMQ and a later read, sent
  /// straight to the node, could overtake it.
  barrier_with_nodes,
};

/// Whether a request of `order` holds later ones until it is answered, on a
/// server with or without mailbox nodes.
constexpr bool holds_later(ordering order, bool mailboxes_on_nodes) {
  return order == ordering::barrier
         || (order == ordering::barrier_with_nodes && mailboxes_on_nodes);
}

/// Which wait bounds a request before it is answered `KO internal error`.
enum class deadline : uint8_t {
  /// waits.request.
  request,
  /// waits.hashing plus waits.request: it may queue for a password hash.
  hashing,
};

/// How long a command's reply may be, for the connection's output
/// accounting.
enum class reply_kind : uint8_t {
  /// At most reply::max_short_bytes.
  short_reply,
  /// A message text: at most reply::max_text_bytes(wire.max_text).
  message_text,
};

/// Starts request `seq` of the connection: asks the actors and arranges for
/// complete() or complete_failed() to be called with the answer.
using command_handler = void (*)(connection_broker* self, uint64_t seq,
                                 const request& req);

/// One row per command: everything the server decides about it. The codec's
/// table (net/wire/codec.hpp) has the command's name, arity and usage.
struct command_row {
  command cmd;
  ordering order;
  deadline wait;
  reply_kind reply;
  command_handler handle;
};

/// The server's row of `cmd`.
const command_row& row_of(command cmd);

/// Bytes to hold for the reply to a request of `row`, terminator included.
size_t max_reply_bytes(const command_row& row, const wire_limits& wire);

} // namespace smsp
