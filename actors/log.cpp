// The server log: timestamped lines, queued for one writer thread.
#include "actors/log.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

namespace smsp {

namespace {

std::atomic<int> kept_level{static_cast<int>(log_level::info)};

const char* level_tag(log_level level) {
  switch (level) {
    case log_level::error:
      return "ERROR";
    case log_level::warn:
      return "WARN";
    case log_level::info:
      return "INFO";
    default:
      return "DEBUG";
  }
}

/// The whole line: time, level, component, text, newline.
std::string stamped(log_level level, std::string_view component,
                    std::string_view text) {
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
  out.reserve(out.size() + component.size() + text.size() + 10);
  out += level_tag(level);
  out += ' ';
  out.append(component);
  out += ": ";
  out.append(text);
  out += '\n';
  return out;
}

/// One write(2) per line where the kernel allows (atomic for pipes up to
/// PIPE_BUF), so lines never interleave byte-wise. False when the write
/// failed (EPIPE with SIGPIPE ignored, EIO, a full disk).
bool write_all(int fd, std::string_view text) {
  while (!text.empty()) {
    auto written = ::write(fd, text.data(), text.size());
    if (written < 0 && errno == EINTR)
      continue;
    if (written <= 0)
      return false;
    text.remove_prefix(static_cast<size_t>(written));
  }
  return true;
}

// The log is the one piece of state every thread touches, also threads that
// are no actor's (main before the actor system exists, CAF's own, the hash
// workers) and after the actor system is gone, so it cannot be owned by an
// actor. A queue under a mutex, drained by one writer thread, is the plain
// way: the mutex is held only to move a string in or out, never during I/O,
// so no caller ever waits for the log's reader.
struct log_writer {
  std::mutex mtx;
  std::condition_variable wake;
  std::deque<std::string> lines;
  size_t queued_bytes = 0;
  bool stopping = false;
  /// Set by the writer thread as it returns.
  bool done = false;
  std::string path;
  int fd = STDERR_FILENO;
  std::thread thread;
};

log_writer* writer = nullptr;
std::atomic<bool> running{false};
std::atomic<uint64_t> dropped{0};

/// Opens `path` for appending, or returns -1 with errno set. Never blocks:
/// opening a FIFO that nobody reads would wait for a reader for ever (at
/// start, before SIGTERM is heeded; on SIGHUP, in the writer thread), so it
/// fails with ENXIO instead. Writes then block as for any file: the queue in
/// front of them bounds what a slow reader costs.
int open_log(const std::string& path) {
  auto fd = ::open(
    path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
  if (fd >= 0)
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

/// Why open_log failed, from its errno.
std::string open_error(int err) {
  std::string why = std::strerror(err);
  if (err == ENXIO)
    why += " (a FIFO that nobody reads?)";
  return why;
}

void drain(log_writer* w) {
  uint64_t reported = 0;
  // Whether the last write to the log file failed: the first failure of a
  // run is told on stderr, since the log itself cannot tell it.
  bool failing = false;
  std::unique_lock<std::mutex> guard{w->mtx};
  for (;;) {
    w->wake.wait(guard, [w] { return w->stopping || !w->lines.empty(); });
    // An empty entry is a reopen request (every line ends with a newline):
    // queued in order, so the lines logged before the SIGHUP go to the old
    // file and its note comes after them.
    if (!w->lines.empty() && w->lines.front().empty()) {
      w->lines.pop_front();
      guard.unlock();
      std::string note;
      bool failed_reopen = false;
      if (w->path.empty()) {
        note = "SIGHUP: logging to stderr, nothing to reopen";
      } else if (auto fd = open_log(w->path); fd >= 0) {
        ::close(w->fd);
        w->fd = fd;
        note = "reopened " + w->path + " (SIGHUP)";
      } else {
        failed_reopen = true;
        note = "cannot reopen " + w->path + ": " + open_error(errno)
               + "; still writing to the old file";
      }
      write_all(w->fd,
                stamped(failed_reopen ? log_level::error : log_level::info,
                        "log", note));
      guard.lock();
      continue;
    }
    if (w->lines.empty() && w->stopping) {
      w->done = true;
      w->wake.notify_all();
      return;
    }
    auto line = std::move(w->lines.front());
    w->lines.pop_front();
    w->queued_bytes -= line.size();
    guard.unlock();
    if (auto lost = dropped.load(); lost > reported) {
      if (write_all(w->fd,
                    stamped(log_level::warn, "log",
                            std::to_string(lost - reported)
                              + " line(s) dropped: the log could not keep "
                                "up, or writing it failed")))
        reported = lost;
    }
    if (write_all(w->fd, line)) {
      failing = false;
    } else {
      dropped.fetch_add(1);
      if (!failing && w->fd != STDERR_FILENO)
        write_all(STDERR_FILENO,
                  stamped(log_level::error, "log",
                          "cannot write " + w->path + ": "
                            + std::strerror(errno)
                            + "; lines are lost until it can be written "
                              "again (the log says how many)"));
      failing = true;
    }
    guard.lock();
  }
}

} // namespace

std::string_view to_string(log_level level) {
  switch (level) {
    case log_level::error:
      return "error";
    case log_level::warn:
      return "warn";
    case log_level::info:
      return "info";
    default:
      return "debug";
  }
}

std::optional<log_level> parse_log_level(std::string_view name) {
  for (auto level :
       {log_level::error, log_level::warn, log_level::info, log_level::debug})
    if (name == to_string(level))
      return level;
  return std::nullopt;
}

void set_log_level(log_level level) {
  kept_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool log_enabled(log_level level) {
  return static_cast<int>(level) <= kept_level.load(std::memory_order_relaxed);
}

void log_at(log_level level, std::string_view component,
            std::string_view text) {
  if (!log_enabled(level))
    return;
  auto line = stamped(level, component, text);
  if (!running.load(std::memory_order_acquire)) {
    write_all(STDERR_FILENO, line);
    return;
  }
  {
    std::lock_guard<std::mutex> guard{writer->mtx};
    if (writer->queued_bytes + line.size() > log_queue_bytes) {
      dropped.fetch_add(1);
      return;
    }
    writer->queued_bytes += line.size();
    writer->lines.push_back(std::move(line));
  }
  writer->wake.notify_one();
}

std::string log_start(const std::string& path) {
  if (writer != nullptr)
    return {};
  auto w = new log_writer;
  if (!path.empty()) {
    w->fd = open_log(path);
    if (w->fd < 0) {
      auto why = "cannot open log file " + path + ": " + open_error(errno);
      delete w;
      return why;
    }
    w->path = path;
  }
  w->thread = std::thread{drain, w};
  writer = w;
  running.store(true, std::memory_order_release);
  return {};
}

void log_reopen() {
  if (writer == nullptr)
    return;
  {
    std::lock_guard<std::mutex> guard{writer->mtx};
    // Never dropped, however full the queue: it takes no bytes.
    writer->lines.emplace_back();
  }
  writer->wake.notify_one();
}

void log_stop() {
  if (writer == nullptr)
    return;
  {
    std::unique_lock<std::mutex> guard{writer->mtx};
    writer->stopping = true;
    writer->wake.notify_all();
    // A write blocked on a reader that never reads must not keep the
    // process from exiting: give up on the rest after a while.
    if (!writer->wake.wait_for(guard, std::chrono::seconds{2},
                               [] { return writer->done; })) {
      running.store(false, std::memory_order_release);
      writer->thread.detach();
      writer = nullptr;
      return;
    }
  }
  writer->thread.join();
  // Nothing logs any more: the actor system is gone (see main).
  running.store(false, std::memory_order_release);
  if (writer->fd != STDERR_FILENO)
    ::close(writer->fd);
  delete writer;
  writer = nullptr;
}

uint64_t log_dropped() {
  return dropped.load();
}

std::string printable(std::string_view text, size_t max_bytes) {
  std::string out;
  size_t used = 0;
  for (; used < text.size(); ++used) {
    auto c = static_cast<unsigned char>(text[used]);
    bool plain = c >= 0x20 && c < 0x7f && c != '\\';
    // The bound is on what is shown: an escaped byte takes four.
    if (out.size() + (plain ? 1 : 4) > max_bytes)
      break;
    if (plain) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    }
  }
  if (used < text.size())
    out += "...";
  return out;
}

} // namespace smsp
