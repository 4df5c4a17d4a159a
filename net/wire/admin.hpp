// The admin interface's line protocol (smsp-admin <-> the server's admin
// listener) and the admin file: pure C++, no CAF, no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "actors/errc.hpp"

namespace smsp::admin {

// The protocol: one request per line (LF, or CRLF), one reply line each,
// in order. The first request must be `AUTH <token>`; anything else, or a
// wrong token, gets one ERR line and the connection is closed. Replies
// start with `OK` or `ERR`; lists and figures follow `OK` on the same line,
// separated by single spaces (names are [a-zA-Z0-9], figures key=value).

/// Longest request line in bytes, terminator included.
inline constexpr size_t max_request = 1024;

/// Hex digits of the token (32 random bytes).
inline constexpr size_t token_chars = 64;

/// Longest USERS pattern, in bytes.
inline constexpr size_t max_pattern = 64;

enum class verb : uint8_t {
  auth,
  stats,
  users,
  remove,
  passwd,
  sessions,
  kick,
};

/// One row of the verb table: the single place a verb's wire word, its
/// number of arguments and its usage are decided.
struct verb_spec {
  verb v;
  std::string_view name;
  size_t min_args;
  size_t max_args;
  std::string_view usage;
};

inline constexpr std::array<verb_spec, 7> verbs = {{
  {verb::auth, "AUTH", 1, 1, "AUTH <token>"},
  {verb::stats, "STATS", 0, 0, "STATS"},
  {verb::users, "USERS", 0, 1, "USERS [<pattern>]"},
  {verb::remove, "DELETE", 1, 1, "DELETE <username>"},
  {verb::passwd, "PASSWD", 2, 2, "PASSWD <username> <password>"},
  {verb::sessions, "SESSIONS", 0, 0, "SESSIONS"},
  {verb::kick, "KICK", 1, 1, "KICK <username>"},
}};

const verb_spec& spec_of(verb v);

/// A request that parsed: its verb and arguments (the arity is checked;
/// a USERS pattern is checked by valid_pattern).
struct request {
  verb v;
  std::vector<std::string> args;
};

/// Parses one request line (terminator removed; a trailing CR is dropped).
/// The verb is case-insensitive; tokens are separated by spaces. Returns
/// the request or the ERR reply line to send instead.
std::variant<request, std::string> parse(std::string_view line);

/// Whether `pattern` is a USERS pattern: 1 to max_pattern bytes of letters,
/// digits and the glob characters * ? [ ] ^ - (SQLite's GLOB).
bool valid_pattern(std::string_view pattern);

/// Whether `token` has the form of a token: token_chars lowercase hex.
bool valid_token(std::string_view token);

// -- replies, each literal defined once ---------------------------------------

namespace reply {

inline constexpr std::string_view ok = "OK";
inline constexpr std::string_view wrong_token = "ERR wrong token";
inline constexpr std::string_view auth_first
  = "ERR authenticate first: AUTH <token>";
inline constexpr std::string_view unknown_verb = "ERR unknown command";
inline constexpr std::string_view empty_request = "ERR empty request";
inline constexpr std::string_view too_long = "ERR request too long";
inline constexpr std::string_view bad_pattern
  = "ERR bad pattern: letters, digits and * ? [ ] ^ - only";
inline constexpr std::string_view busy = "ERR too many admin connections";
/// A request the server could not answer (a timeout, a dead actor).
inline constexpr std::string_view internal_error = "ERR internal error";

/// "OK <payload>", or "OK" for an empty payload.
std::string ok_with(std::string_view payload);

/// "ERR usage: <usage>".
std::string usage(const verb_spec& spec);

/// The ERR line for a domain error.
std::string_view failure(errc code);

} // namespace reply

/// A reply line as the tool reads it.
struct parsed_reply {
  bool ok = false;
  /// What follows "OK " or "ERR " (empty for a bare OK).
  std::string text;
};

/// nullopt when the line is neither OK... nor ERR...
std::optional<parsed_reply> parse_reply(std::string_view line);

// -- payloads -----------------------------------------------------------------

using field = std::pair<std::string, std::string>;

/// "key=value key=value ...": keys [a-z_], values without spaces or '='.
std::string encode_fields(const std::vector<field>& fields);

/// The fields of encode_fields' text; nullopt when malformed.
std::optional<std::vector<field>> decode_fields(std::string_view text);

/// Space-separated names (the payload of USERS and SESSIONS).
std::string encode_names(const std::vector<std::string>& names);
std::vector<std::string> decode_names(std::string_view text);

// -- the admin file -----------------------------------------------------------

/// Where a running server's admin listener is and the token it wants.
struct endpoint {
  std::string host;
  uint16_t port = 0;
  std::string token;
  /// The server's process id (for messages only).
  int64_t pid = 0;
};

/// The file's name inside the data dir.
inline constexpr std::string_view file_name = "admin";

/// The file's text: a comment line, then host=, port=, token=, pid= lines.
std::string format_file(const endpoint& e);

/// The endpoint in a file's text; nullopt when a line is missing or bad.
std::optional<endpoint> parse_file(std::string_view text);

} // namespace smsp::admin
