// smsp-actors' command line, and the one function that turns options into
// the final server_config (used by main and by the tests' servers alike).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "actors/log.hpp"
#include "actors/logic/clock.hpp"
#include "app/server.hpp"

namespace smsp {

/// What the command line says, before the settings that depend on others
/// are filled in. Start from the defaults (`server_options{}`), change
/// what you want, then resolve_options().
struct server_options {
  /// Every setting that needs no resolving, at its default.
  server_config server;
  /// Unset: 10 ms with --sync=full, else 0 (only an fsync is worth waiting
  /// for).
  std::optional<std::chrono::microseconds> commit_delay;
  /// Comma-separated networks (CIDR) exempt from the per-address login
  /// penalty; empty trusts none.
  std::string trusted_networks = "127.0.0.0/8,::1/128";
  /// Where every timed rule (deadlines, idle rule, passivation, throttle,
  /// DUMP's rate limit) reads the time; tests pass their own.
  clock_fn now = steady_clock_fn();
};

/// The final configuration: fills in the defaults that depend on other
/// settings (the commit delay from the sync mode, the throttle's memory from
/// its longest window), hands every actor the same waits and clock, and
/// checks the rules between options. Returns the reason (naming the options)
/// when they do not fit together.
std::variant<server_config, std::string>
resolve_options(const server_options& opts);

/// A parsed command line.
struct command_line {
  /// `smsp-actors node ...`: run a mailbox node, not a server.
  bool is_node = false;
  node_config node;
  server_config server;
  /// The log file (--log-file), or empty for stderr.
  std::string log_file;
  /// Lines below this level are not logged (--log-level).
  smsp::log_level log_threshold = smsp::log_level::info;
  /// For the start-up log line.
  std::string pwhash;
  /// Options for CAF's own configuration, e.g. --scheduler.max-threads=1.
  std::vector<std::string> caf_args;
};

/// Exit codes of all three tools: 0 success, 1 a failure at run time, 2 a
/// usage error (a bad option or value).
enum exit_code : int { exit_ok = 0, exit_failure = 1, exit_usage = 2 };

/// Parses smsp-actors' command line (CLI11: `--port 5000` and `--port=5000`
/// both work). Every numeric option has an explicit range and is parsed
/// strictly (decimal digits, no sign, no wrap-around): a value outside it is
/// refused naming the option. Returns the resolved configuration, or an exit
/// code when the program should stop at once (exit_ok after --help,
/// exit_usage after an error, the message printed to stderr).
std::variant<command_line, int> parse_command_line(int argc,
                                                   const char* const* argv);

} // namespace smsp
