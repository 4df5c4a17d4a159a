// The server log: one timestamped line per event, safe to call from any
// thread, never blocking the caller on the log's reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace smsp {

/// How much a line matters, most to least; --log-level keeps the lines at
/// its level and above.
enum class log_level { error, warn, info, debug };

/// "error", "warn", "info", "debug".
std::string_view to_string(log_level level);

/// The level named by `name` (as to_string gives it), or nullopt.
std::optional<log_level> parse_log_level(std::string_view name);

/// Keeps lines of `level` and above from now on (info at start). Any thread.
void set_log_level(log_level level);

/// Whether lines of `level` are kept: callers test it before building an
/// expensive debug line.
bool log_enabled(log_level level);

/// Logs "<UTC time> <LEVEL> <component>: <text>", e.g.
/// "2026-12-01T10:00:00.123Z INFO auth: LOGIN failed: user=bob ...", if
/// `level` is kept. `component` is one lower-case word naming the part of
/// the server that speaks (server, conn, auth, registry, store, dump, node,
/// log...). Once log_start() has run, the line is queued for the log's
/// writer thread and the caller never waits for the log's reader: if more
/// than log_queue_bytes wait (the reader does not keep up, or a write
/// blocks), the line is dropped and counted, and the log later says how many
/// were. Before log_start() (and after log_stop()) it writes to stderr
/// directly, in one write(2) per line.
void log_at(log_level level, std::string_view component, std::string_view text);

inline void log_error(std::string_view component, std::string_view text) {
  log_at(log_level::error, component, text);
}

inline void log_warn(std::string_view component, std::string_view text) {
  log_at(log_level::warn, component, text);
}

inline void log_info(std::string_view component, std::string_view text) {
  log_at(log_level::info, component, text);
}

inline void log_debug(std::string_view component, std::string_view text) {
  log_at(log_level::debug, component, text);
}

/// Bytes of lines that may wait for the writer thread.
inline constexpr size_t log_queue_bytes = 4 * 1024 * 1024;

/// Starts the writer thread, writing to `path` (appended, created with mode
/// 0600) or to stderr when `path` is empty. Returns an error text when the
/// file cannot be opened.
std::string log_start(const std::string& path);

/// Reopens the log file (after logrotate moved it), from the writer thread;
/// logs that it did. With stderr, only logs that there is nothing to reopen.
void log_reopen();

/// Writes what is queued, then stops the writer thread.
void log_stop();

/// Lines dropped since log_start() because the writer could not keep up or
/// a write failed.
uint64_t log_dropped();

/// `text` made safe for one log line: bytes outside 0x20-0x7E (and the
/// backslash) become \xHH, and the result is at most `max_bytes` bytes plus
/// "..." when the text did not fit.
std::string printable(std::string_view text, size_t max_bytes = 80);

} // namespace smsp
