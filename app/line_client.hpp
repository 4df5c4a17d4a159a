// Blocking TCP line client for SMSP, shared by client, bench and tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace smsp {

/// One TCP connection to an SMSP server. Not thread-safe: one per thread.
class line_client {
public:
  /// Connects to host:port; throws std::runtime_error with a readable message
  /// when the host cannot be resolved or the connection is refused.
  line_client(const std::string& host, uint16_t port,
              std::chrono::milliseconds timeout = std::chrono::seconds{10});
  ~line_client();

  line_client(const line_client&) = delete;
  line_client& operator=(const line_client&) = delete;

  /// Writes all of `bytes`; throws on error.
  void send_raw(std::string_view bytes);

  /// Reads one reply up to `term` ('\n' or '\0') and returns it without the
  /// terminator (and without the '\r' of a CRLF when `term` is '\n').
  /// Returns nullopt when the server closed the connection; throws
  /// std::runtime_error when no reply arrives within the timeout.
  std::optional<std::string> read_reply(char term = '\n');

  /// Sends `request` + "\n" and returns its reply; throws when the
  /// connection closes before the reply.
  std::string call(std::string_view request);

  /// Closes our sending side (the server may then drop unanswered requests).
  void shutdown_write();

  int fd() const {
    return fd_;
  }

private:
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::string inbuf_;
};

} // namespace smsp
