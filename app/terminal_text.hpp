// Escaping of received text for a terminal (header-only, no CAF): smsp-client.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace smsp {

/// Length of the well-formed UTF-8 sequence that starts at `text[pos]`
/// (Unicode 15, table 3-7: no overlong forms, no surrogates, nothing above
/// U+10FFFF), or 0 when the bytes there are not one.
inline size_t utf8_sequence_length(std::string_view text, size_t pos) {
  auto byte = [&](size_t i) -> unsigned {
    return pos + i < text.size() ? static_cast<unsigned char>(text[pos + i])
                                 : 0u;
  };
  auto in = [](unsigned c, unsigned lo, unsigned hi) {
    return c >= lo && c <= hi;
  };
  auto lead = byte(0);
  if (lead < 0x80)
    return 1;
  if (in(lead, 0xC2, 0xDF))
    return in(byte(1), 0x80, 0xBF) ? 2 : 0;
  // The second byte's range depends on the lead byte; later ones do not.
  unsigned lo = 0x80;
  unsigned hi = 0xBF;
  size_t len = 0;
  if (in(lead, 0xE0, 0xEF)) {
    len = 3;
    if (lead == 0xE0)
      lo = 0xA0; // overlong below U+0800
    else if (lead == 0xED)
      hi = 0x9F; // U+D800-U+DFFF are surrogates
  } else if (in(lead, 0xF0, 0xF4)) {
    len = 4;
    if (lead == 0xF0)
      lo = 0x90; // overlong below U+10000
    else if (lead == 0xF4)
      hi = 0x8F; // above U+10FFFF
  } else {
    return 0; // a continuation byte, C0, C1 or F5-FF: never a lead byte
  }
  if (!in(byte(1), lo, hi))
    return 0;
  for (size_t i = 2; i < len; ++i)
    if (!in(byte(i), 0x80, 0xBF))
      return 0;
  return len;
}

/// `text` made safe to write to a terminal: every byte a terminal could
/// obey or misread is shown as `\xHH`, namely C0 controls (0x00-0x1F,
/// including ESC, CR and TAB), DEL, the C1 controls U+0080-U+009F (UTF-8
/// 0xC2 0x80-0x9F; U+009B is a CSI to some terminals) and every byte that
/// is not part of well-formed UTF-8 (a lone 0x9B is a CSI too). A backslash
/// becomes `\\`, so the result reads back unambiguously. Printable ASCII and
/// well-formed UTF-8 from U+00A0 on stay as they are: mail may be in any
/// language.
inline std::string escape_for_terminal(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  auto escape = [&](unsigned char c) {
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 0xF];
  };
  for (size_t pos = 0; pos < text.size();) {
    auto c = static_cast<unsigned char>(text[pos]);
    if (c == '\\') {
      out += "\\\\";
      ++pos;
    } else if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++pos;
    } else if (auto len = utf8_sequence_length(text, pos); len < 2) {
      escape(c); // C0, DEL, or not well-formed: resynchronize on the next byte
      ++pos;
    } else if (c == 0xC2 && static_cast<unsigned char>(text[pos + 1]) < 0xA0) {
      escape(c); // a C1 control: show both bytes of its encoding
      escape(static_cast<unsigned char>(text[pos + 1]));
      pos += 2;
    } else {
      out.append(text.substr(pos, len));
      pos += len;
    }
  }
  return out;
}

} // namespace smsp
