// The server log: timestamped lines on stderr.
#include "actors/log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <unistd.h>

namespace smsp {

void log_line(std::string_view line) {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto secs = system_clock::to_time_t(now);
  auto millis = duration_cast<milliseconds>(now.time_since_epoch()).count()
                % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[40];
  auto n = std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(stamp + n, sizeof(stamp) - n, ".%03dZ ",
                static_cast<int>(millis));
  std::string out = stamp;
  out.append(line);
  out += '\n';
  // One write(2) per line: atomic for pipes up to PIPE_BUF and never
  // interleaved byte-wise with other lines.
  auto rest = std::string_view{out};
  while (!rest.empty()) {
    auto written = ::write(STDERR_FILENO, rest.data(), rest.size());
    if (written <= 0)
      return;
    rest.remove_prefix(static_cast<size_t>(written));
  }
}

std::string printable(std::string_view text, size_t max_bytes) {
  std::string out;
  auto shown = text.substr(0, max_bytes);
  for (unsigned char c : shown) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (text.size() > max_bytes)
    out += "...";
  return out;
}

} // namespace smsp
