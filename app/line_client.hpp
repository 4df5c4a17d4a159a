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
  /// `local_address`, when not empty, is a numeric address to connect from
  /// (e.g. "127.0.0.2", so that a test looks like another client to the
  /// server); the connection fails, with a message naming it, when it cannot
  /// be bound or is not of the server address's family.
  line_client(const std::string& host, uint16_t port,
              std::chrono::milliseconds timeout = std::chrono::seconds{10},
              const std::string& local_address = {});
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
