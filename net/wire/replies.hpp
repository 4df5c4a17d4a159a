// Every reply line the server sends, defined once (pure C++, no CAF).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "actors/errc.hpp"
#include "net/wire/codec.hpp"

namespace smsp::reply {

// -- fixed replies ------------------------------------------------------------

/// Success with nothing to return.
inline constexpr std::string_view ok = "OK";

/// MESSAGE without a live session: the original protocol's literal.
inline constexpr std::string_view log_in_first = "You should log in first.";

/// A request the server could not answer (a timeout, a dead actor): the
/// cause is logged, the client learns nothing more.
inline constexpr std::string_view internal_error = "KO internal error";

/// Longest reply that carries no message text, terminator included: every
/// literal of this file and every usage reply fits (checked by the codec
/// tests). A connection reserves this much output for a request whose reply
/// is short.
inline constexpr size_t max_short_bytes = 64;

// -- replies with a value -----------------------------------------------------

/// "OK <value>": a cookie (REGISTER, LOGIN) or a message text (GETMSG).
std::string ok_with(std::string_view value);

/// "COUNTED <n>".
std::string counted(uint64_t n);

/// Longest "OK <text>" reply for a message text of `max_text` bytes,
/// terminator included.
constexpr size_t max_text_bytes(size_t max_text) {
  return max_text + 3 + 2;
}

// -- failures -----------------------------------------------------------------

/// "KO <reason>" for a domain error, e.g. "KO mailbox empty".
std::string_view failure(errc code);

/// The reply to a domain error of command `cmd`: failure(code), except MESSAGE
/// without a session, which gets log_in_first.
std::string_view failure(errc code, command cmd);

/// The reply line for a request that does not parse, e.g. "KO usage: STORE
/// <username> <cookie>".
std::string failure(const parse_error& err);

} // namespace smsp::reply
