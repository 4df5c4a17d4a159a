// Pure SMSP wire codec: framing, parsing, reply encoding (no CAF, no I/O).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace smsp {

/// How a request ended; its reply ends the same way.
enum class terminator : uint8_t { lf, crlf, nul };

/// The largest --max-text a server may be given, in bytes (1 GiB): also the
/// top of smsp-client's --max-text.
inline constexpr size_t max_text_ceiling = size_t{1} << 30;

/// Wire limits from PROTOCOL.md section 1 (defaults, configurable).
struct wire_limits {
  /// Longest request in bytes, terminator included.
  size_t max_request = 64 * 1024;
  /// Longest MESSAGE text in bytes.
  size_t max_text = 16 * 1024;
};

/// One request line cut from the byte stream, terminator removed.
struct frame {
  std::string line;
  terminator term = terminator::lf;
  /// The request exceeded max_request; `line` is empty and its bytes are gone.
  bool too_long = false;
};

/// Cuts a byte stream into frames. Holds at most max_request bytes of an
/// unfinished request: the rest of an oversized one is skipped unbuffered.
class framer {
public:
  explicit framer(size_t max_request = wire_limits{}.max_request);

  /// Consumes `size` bytes and appends every frame they complete to `out`.
  void feed(const char* data, size_t size, std::vector<frame>& out);

  /// Bytes of an unfinished request held back (for tests and accounting).
  size_t buffered() const {
    return partial_.size();
  }

private:
  void finish(terminator term, std::vector<frame>& out);

  size_t max_request_;
  std::string partial_;
  /// Inside an oversized request: drop bytes until the next terminator.
  bool discarding_ = false;
  /// While discarding: the last byte seen was CR (a CRLF may span chunks).
  bool last_was_cr_ = false;
};

enum class command : uint8_t {
  register_user,
  login,
  logout,
  message,
  store,
  count,
  getmsg,
  delmsg,
  dump,
};

/// One row of the command table, the single place a command's name, arity
/// and usage are decided. The server's own row for each command (its
/// handler, ordering and deadline) is in net/commands.hpp, checked at compile
/// time to list the same commands in the same order.
struct command_spec {
  command cmd;
  std::string_view name;
  /// Argument tokens after the command word; MESSAGE's text counts as one.
  size_t args;
  /// The last argument is a session cookie.
  bool needs_session;
  std::string_view usage;
};

/// How many commands SMSP has.
inline constexpr size_t command_count = 9;

/// Every SMSP command, in PROTOCOL.md order (and in `command`'s order).
inline constexpr std::array<command_spec, command_count> command_specs{{
  {command::register_user, "REGISTER", 2, false,
   "REGISTER <username> <password>"},
  {command::login, "LOGIN", 2, false, "LOGIN <username> <password>"},
  {command::logout, "LOGOUT", 1, true, "LOGOUT <cookie>"},
  {command::message, "MESSAGE", 2, true, "MESSAGE <text> <cookie>"},
  {command::store, "STORE", 2, true, "STORE <username> <cookie>"},
  {command::count, "COUNT", 2, true, "COUNT <username> <cookie>"},
  {command::getmsg, "GETMSG", 2, true, "GETMSG <username> <cookie>"},
  {command::delmsg, "DELMSG", 2, true, "DELMSG <username> <cookie>"},
  {command::dump, "DUMP", 0, false, "DUMP"},
}};

/// Every SMSP command, in PROTOCOL.md order.
constexpr const std::array<command_spec, command_count>& command_table() {
  return command_specs;
}

/// The table row of a command.
constexpr const command_spec& spec_of(command cmd) {
  return command_specs[static_cast<size_t>(cmd)];
}

/// Finds a command by its (case-insensitive) word, or nullptr.
const command_spec* find_command(std::string_view word);

/// A well-formed request. For needs_session commands args.back() is the
/// cookie; for MESSAGE args = {text, cookie}.
struct request {
  const command_spec* spec = nullptr;
  std::vector<std::string> args;

  command cmd() const {
    return spec->cmd;
  }
  const std::string& cookie() const {
    return args.back();
  }
};

enum class parse_errc : uint8_t {
  empty_request,
  request_too_long,
  unknown_command,
  wrong_arity,
  text_too_long,
};

struct parse_error {
  parse_errc code;
  /// The command concerned, for wrong_arity and text_too_long.
  const command_spec* spec = nullptr;
};

using parse_result = std::variant<request, parse_error>;

/// Parses one frame into a request or the error to answer it with.
parse_result parse(const frame& f, const wire_limits& limits = {});

/// Appends `reply` and `term` to `out`. Terminator bytes inside `reply` are
/// replaced by '?' so that a reply is always exactly one frame.
void encode_reply(std::string_view reply, terminator term,
                  std::vector<char>& out);

/// The bytes of a terminator, e.g. "\r\n".
std::string_view terminator_bytes(terminator term);

} // namespace smsp
