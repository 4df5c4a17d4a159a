// Helpers shared by the test programs: temp data dirs, a captured log and a
// clock moved by hand.
#pragma once

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include <unistd.h>

#include "actors/logic/clock.hpp"

namespace smsp::testing {

/// RSS bounds in tests are multiplied by this: 1, or 5 under AddressSanitizer,
/// whose allocator adds redzones and shadow memory to every allocation
/// (measured: 2.2 to 4 times the plain build's growth). The plain build
/// checks the real bounds; the sanitized one checks that they still hold
/// in kind.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr long memory_factor = 5;
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
inline constexpr long memory_factor = 5;
#  else
inline constexpr long memory_factor = 1;
#  endif
#else
inline constexpr long memory_factor = 1;
#endif

/// A fresh directory name under the system's temp dir (created by whoever
/// uses it), removed with everything in it afterwards.
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix = "smsp-test") {
    std::random_device rd;
    path = std::filesystem::temp_directory_path()
           / (prefix + "-" + std::to_string(::getpid()) + "-"
              + std::to_string(rd()));
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str() const {
    return path.string();
  }

  std::filesystem::path path;
};

/// Redirects file descriptor 2 (where log_at writes) into a temporary file
/// for as long as it lives.
class stderr_capture {
public:
  stderr_capture() {
    file_ = std::tmpfile();
    REQUIRE(file_ != nullptr);
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    REQUIRE(saved_ >= 0);
    REQUIRE(::dup2(::fileno(file_), STDERR_FILENO) >= 0);
  }
  stderr_capture(const stderr_capture&) = delete;
  stderr_capture& operator=(const stderr_capture&) = delete;
  ~stderr_capture() {
    restore();
    if (file_ != nullptr)
      std::fclose(file_);
  }

  /// Everything written to stderr so far.
  std::string text() const {
    std::string out;
    char buf[4096];
    off_t offset = 0;
    for (;;) {
      auto n = ::pread(::fileno(file_), buf, sizeof(buf), offset);
      if (n <= 0)
        break;
      out.append(buf, static_cast<size_t>(n));
      offset += n;
    }
    return out;
  }

  /// Sends stderr back where it went before.
  void restore() {
    if (saved_ < 0)
      return;
    std::fflush(stderr);
    ::dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    saved_ = -1;
  }

private:
  std::FILE* file_ = nullptr;
  int saved_ = -1;
};

/// A clock that moves only when the test says: hand fn() to whatever reads
/// time through a smsp::clock_fn (deadlines, the idle rule, passivation),
/// then advance() it instead of sleeping. Copies share one time.
class manual_clock {
public:
  manual_clock() : offset_(std::make_shared<std::atomic<int64_t>>(0)) {
    // nop
  }

  /// The time now. It starts a day after the steady clock's epoch, so that
  /// subtracting a timeout from it stays meaningful.
  steady_time now() const {
    return read(*offset_);
  }

  /// Reads this clock. It holds the offset itself, so it stays valid after
  /// the clock is gone (an actor may outlive the test's variable).
  smsp::clock_fn fn() const {
    return [offset = offset_] { return read(*offset); };
  }

  void advance(std::chrono::nanoseconds by) {
    *offset_ += by.count();
  }

private:
  static steady_time read(const std::atomic<int64_t>& offset) {
    return steady_time{std::chrono::hours{24}}
           + std::chrono::nanoseconds{offset.load()};
  }

  std::shared_ptr<std::atomic<int64_t>> offset_;
};

} // namespace smsp::testing
