// The server log: one line per event on stderr, safe to call from any actor.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace smsp {

/// Writes "<UTC time> <line>\n" to stderr in one write, so lines from
/// different threads never interleave.
void log_line(std::string_view line);

/// Texts DUMP shows per queue (the IMQ, each mailbox), so that a large
/// queue cannot stall it (PROTOCOL.md, DUMP).
constexpr size_t dump_texts = 10;

/// `text` made safe for one log line: bytes outside 0x20-0x7E become \xHH and
/// anything past `max_bytes` becomes "...".
std::string printable(std::string_view text, size_t max_bytes = 80);

} // namespace smsp
