// The connection broker's state, and what its command handlers may call
// (net/commands.cpp); for the acceptor and the handlers only.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "caf/io/all.hpp"
#include "net/connection.hpp"

namespace smsp {

struct command_row;

/// A request handed to the actors (or answered at once), until its reply is
/// written.
struct started_request {
  terminator term;
  /// Its command's row; nullptr for a request that did not parse.
  const command_row* row;
  /// When it started (its latency runs from here to its reply).
  steady_time started;
  steady_time deadline;
  /// Output bytes held for its reply: the longest reply it may get until
  /// the answer is known, then the encoded reply's own size.
  size_t reserved;
  /// Set when the answer is known; written once every older one is.
  std::optional<std::string> reply;
};

/// Whether the socket is read. CAF 0.17 applies halt() and trigger() later,
/// in its I/O loop, and a halt and a trigger in one loop iteration cancel
/// out while the scribe still believes it is reading: the connection would
/// never read again (seen under ASan). So each switch is followed by
/// reading_settle_time (10 ms, far longer than one loop iteration) in a
/// settling state, and only then may the next switch happen:
///
///   reading --halt--> paused_settling --10 ms--> paused
///   paused --trigger--> reading_settling --10 ms--> reading
///
/// Reading is wanted while fewer than max_queued requests and
/// max_queued_bytes wait to start (update_reading in connection.cpp). A
/// request cannot start while its reply might exceed the connection's
/// output allowance (see connection_state::unsent), so a client that does
/// not read its replies fills the queue and is no longer read: the kernel's
/// buffers then push back on it.
enum class read_state : uint8_t {
  reading,
  paused_settling,
  paused,
  reading_settling,
};

struct connection_state {
  connection_deps deps;
  caf::io::connection_handle hdl;
  /// "address:port" of the client, for the log; kept from the start, since
  /// CAF forgets it once the socket is closed.
  std::string peer;
  /// The socket, written directly while CAF holds no unsent bytes of this
  /// connection (see write_ready); -1 on the tests' multiplexer.
  int socket = -1;
  /// CAF's read size for this connection, in bytes (see first_read_size
  /// in connection.cpp).
  size_t read_size = 0;
  framer frames;
  /// Requests read and not yet started, in arrival order.
  std::deque<frame> queued;
  /// Memory the queued requests take (their lines and bookkeeping),
  /// counted against max_queued_bytes.
  size_t queued_bytes = 0;
  /// queued.front(), parsed: its reply's size decides whether it may start.
  std::optional<parse_result> next;
  /// Started requests, oldest first, numbered consecutively from
  /// `first_seq`. Replies are written strictly from the front, so they
  /// leave in request order whatever order the actors answer in.
  std::deque<started_request> started;
  uint64_t first_seq = 0;
  /// A started barrier request (see net/commands.hpp) is unanswered: start
  /// nothing more until it is.
  bool barrier = false;
  /// A DUMP waiting for the requests before it (see on_dump).
  std::optional<uint64_t> dump_waiting;
  read_state reading = read_state::reading;
  bool watchdog_armed = false;

  // -- output accounting --------------------------------------------------
  // Invariant: unsent + reserved <= max_unsent and <= free_output +
  // granted, except that one request may start when both are zero (its
  // reply always fits free_output).

  /// Reply bytes handed to CAF and not yet written to the socket (exact:
  /// writes are acknowledged, data_transferred_msg).
  size_t unsent = 0;
  /// A flush_atom to itself is on its way: the replies written meanwhile
  /// wait in CAF's buffer and leave with it.
  bool flush_posted = false;
  /// Sum of started[i].reserved.
  size_t reserved = 0;
  /// Bytes every connection may hold without asking: its longest possible
  /// reply, so that one request can always start.
  size_t free_output = 0;
  /// Bytes of the server-wide budget this connection holds beyond
  /// free_output (asked of the acceptor in chunks).
  size_t granted = 0;
  /// A grant request to the acceptor is under way.
  bool grant_pending = false;

  // -- the idle rule ------------------------------------------------------

  /// When the connection last wrote a reply (so received a complete
  /// request) or was last seen busy.
  steady_time last_activity;
  /// When the client last took reply bytes, or the connection last had
  /// none outstanding.
  steady_time last_progress;

  // -- metrics (only with deps.metrics) ----------------------------------

  /// Requests answered since the last report to deps.metrics; allocated
  /// once at the start (it is not small) and gone after the last report.
  std::unique_ptr<request_counters> unreported;
  /// A reminder to report is scheduled.
  bool report_armed = false;
  /// Why the connection is closing, for its last report.
  close_reason close_as = close_reason::client_closed;

  static inline const char* name = "smsp.connection";
};

using connection_broker
  = caf::stateful_actor<connection_state, caf::io::broker>;

caf::behavior connection(connection_broker* self,
                         caf::io::connection_handle hdl, connection_deps deps);

// -- for the command handlers (net/commands.cpp) ------------------------------

/// Records `reply` as the answer to request `seq` and writes what is ready.
/// An answer for a request already answered (by the deadline check) is
/// dropped. `result` is what the request came to, for the metrics.
void complete(connection_broker* self, uint64_t seq, std::string reply,
              request_result result = request_result::ok);

/// Records the reply to a failed request: `KO <reason>` for a domain error,
/// `KO internal error` (and a log line) for anything else.
void complete_failed(connection_broker* self, uint64_t seq, command cmd,
                     const caf::error& err);

/// Runs DUMP request `seq` once every earlier request of the connection is
/// answered, so that it shows their commits.
void dump_after_earlier(connection_broker* self, uint64_t seq);

} // namespace smsp
