// Blocking TCP line client for SMSP, shared by client, bench and tests.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "net/wire/codec.hpp"
#include "net/wire/replies.hpp"

namespace smsp {

/// The server sent more bytes without the reply's terminator than the
/// longest reply allowed (line_client::max_reply).
struct reply_too_long : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Longest reply, terminator included, in bytes, from a server whose message
/// texts are at most `max_text` bytes (its --max-text): a GETMSG's "OK <text>"
/// with CRLF, but never less than the longest reply without a text.
constexpr size_t max_reply_for_text(size_t max_text) {
  return std::max(reply::max_text_bytes(max_text), reply::max_short_bytes);
}

/// The longest reply, in bytes, that the protocol allows with its default
/// limits (PROTOCOL.md section 1: texts of 16 KiB): line_client's default cap.
inline constexpr size_t default_max_reply
  = max_reply_for_text(wire_limits{}.max_text);

/// One TCP connection to an SMSP server. Not thread-safe: one per thread.
///
/// After a timeout, an over-long reply or a reply with the wrong terminator
/// the connection is given up (the next reply could not be matched to its
/// request any more): it is shut down, its buffer freed, and every later
/// send_raw, read_reply or call throws std::runtime_error.
class line_client {
public:
  /// Connects to host:port; throws std::runtime_error with a readable message
  /// when the host cannot be resolved or the connection is refused.
  /// `timeout` bounds each read_reply as a whole (a deadline, however the
  /// reply's bytes trickle in). `local_address`, when not empty, is a numeric
  /// address to connect from (e.g. "127.0.0.2", so that a test looks like
  /// another client to the server); the connection fails, with a message
  /// naming it, when it cannot be bound or is not of the server address's
  /// family.
  line_client(const std::string& host, uint16_t port,
              std::chrono::milliseconds timeout = std::chrono::seconds{10},
              const std::string& local_address = {});
  ~line_client();

  line_client(const line_client&) = delete;
  line_client& operator=(const line_client&) = delete;

  /// Writes all of `bytes`; throws std::runtime_error on error or when the
  /// connection was given up.
  void send_raw(std::string_view bytes);

  /// Reads the next reply, which ends with `term`: the terminator of the
  /// request it answers (the server answers with the request's own), and
  /// returns it without exactly that terminator. With lf a '\r' before the
  /// '\n' is the reply's own byte (a message text may end in CR); with crlf
  /// one '\r' is removed and a reply ending in a bare '\n' is an error.
  /// Returns nullopt when the server closed the connection (the bytes of an
  /// unfinished reply are dropped). Throws reply_too_long when max_reply()
  /// bytes arrive without the terminator, and std::runtime_error when the
  /// reply is not complete within the timeout of the constructor, counted
  /// from this call, when it ends wrongly, on a socket error, or when the
  /// connection was given up; all but socket errors give it up.
  std::optional<std::string> read_reply(terminator term = terminator::lf);

  /// Sends `request` and the bytes of `term`, returns its reply (read as by
  /// read_reply); throws std::runtime_error as read_reply does and when the
  /// connection closes before the reply. `request` must not hold a
  /// terminator.
  std::string call(std::string_view request, terminator term = terminator::lf);

  /// Sets the longest reply accepted, terminator included, in bytes; at
  /// least 2 (shorter values are raised to 2). The default is
  /// default_max_reply; a server run with a larger --max-text needs
  /// max_reply_for_text of it.
  void set_max_reply(size_t bytes) {
    max_reply_ = std::max(bytes, size_t{2});
  }

  /// The longest reply accepted, terminator included, in bytes.
  size_t max_reply() const {
    return max_reply_;
  }

  /// Closes our sending side (the server may then drop unanswered requests).
  void shutdown_write();

  /// Whether the server has closed or reset the connection and no reply of
  /// it is left to read (e.g. after the server's --idle-timeout), or the
  /// connection was given up. Checks without blocking, so that a caller
  /// about to send can reconnect rather than lose the request.
  bool peer_closed() const;

  int fd() const {
    return fd_;
  }

private:
  /// Gives up the connection for `why` (kept for later calls) and throws
  /// `Error{why}`.
  template <class Error>
  [[noreturn]] void give_up(const std::string& why);

  void check_usable() const;

  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  size_t max_reply_ = default_max_reply;
  /// Received bytes not yet returned: the next replies, the last one maybe
  /// unfinished.
  std::string inbuf_;
  /// Why the connection was given up; empty while it is usable.
  std::string given_up_;
};

} // namespace smsp
