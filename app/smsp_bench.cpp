// smsp-bench: a bounded, checking load generator for SMSP servers (epoll).
#include "app/line_client.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;
using time_point = clock_type::time_point;

enum class workload { count, message_store, mailbox, login, mail, read };

/// The server the load goes to: an SMSP server, or Redis (inline commands
/// in, RESP replies out) for the side-by-side comparison of BENCHMARKS.md.
enum class target { smsp, redis };

struct options {
  std::string host = "127.0.0.1";
  uint16_t port = 5000;
  size_t connections = 50;
  size_t pipeline = 1;
  double duration = 10;
  double warmup = 1;
  std::string workload_name = "count";
  workload kind = workload::count;
  std::string target_name = "smsp";
  target server = target::smsp;
  size_t text_bytes = 64;
  size_t threads = 1;
  size_t setup_connections = 8;
  std::string user_prefix;
  int server_pid = 0;
  bool json = false;
};

/// Requests in one cycle of the mix: the unit results are also given in.
size_t cycle_length(const options& opt) {
  switch (opt.kind) {
    case workload::count:
    case workload::login:
      return 1;
    case workload::message_store:
    case workload::read:
      return 2;
    case workload::mailbox:
      return 4;
    case workload::mail:
      return opt.server == target::redis ? 4 : 5;
  }
  return 1;
}

// Replies that fail the check are printed only up to this many, so a broken
// server does not flood the terminal; they are all counted.
constexpr int max_printed_problems = 10;

// Longest reply accepted besides the echo of a MESSAGE text (the protocol's
// request limit is 64 KiB).
constexpr size_t max_reply_bytes = 128 * 1024;
std::atomic<int> printed_problems{0};

void report_problem(const std::string& what) {
  if (printed_problems.fetch_add(1) < max_printed_problems)
    std::fprintf(stderr, "smsp-bench: %s\n", what.c_str());
  else if (printed_problems.load() == max_printed_problems + 1)
    std::fprintf(stderr, "smsp-bench: (further problems counted, not shown)\n");
}

std::string printable(std::string_view reply) {
  constexpr size_t max_shown = 120;
  std::string out;
  for (auto c : reply.substr(0, max_shown)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
      out += buf;
    }
  }
  if (reply.size() > max_shown)
    out += "... (" + std::to_string(reply.size()) + " bytes)";
  return out;
}

// -- latency histogram --------------------------------------------------------

// Log-linear buckets (HdrHistogram-style): exact below 256 ns, then 128
// buckets per power of two (< 0.8 % error). Keeping every sample would cost
// hundreds of MB at pipelined rates.
class histogram {
public:
  static constexpr int exact = 256;
  static constexpr int per_octave = 128;
  static constexpr size_t bucket_count = exact + 56 * per_octave;

  histogram() : buckets_(bucket_count, 0) {
  }

  void record(uint64_t ns) {
    ++buckets_[index_of(ns)];
    ++count_;
    max_ = std::max(max_, ns);
  }

  void merge(const histogram& other) {
    for (size_t i = 0; i < bucket_count; ++i)
      buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t count() const {
    return count_;
  }

  uint64_t max() const {
    return max_;
  }

  /// Value at quantile q (0..1) in ns: the middle of its bucket, never above
  /// the largest sample.
  uint64_t quantile(double q) const {
    if (count_ == 0)
      return 0;
    auto rank
      = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i];
      if (seen >= rank) {
        auto [low, high] = bounds_of(i);
        return std::min(low + (high - low) / 2, max_);
      }
    }
    return max_;
  }

private:
  static size_t index_of(uint64_t v) {
    if (v < exact)
      return static_cast<size_t>(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 7;
    return exact + static_cast<size_t>(shift - 1) * per_octave
           + static_cast<size_t>((v >> shift) - per_octave);
  }

  static std::pair<uint64_t, uint64_t> bounds_of(size_t i) {
    if (i < exact)
      return {i, i};
    auto shift = (i - exact) / per_octave + 1;
    uint64_t m = (i - exact) % per_octave + per_octave;
    return {m << shift, ((m + 1) << shift) - 1};
  }

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

// -- users and setup ----------------------------------------------------------

struct bench_user {
  /// The SMSP user, or the Redis list's key.
  std::string name;
  std::string password;
  std::string cookie;
  /// The one message the read mix finds in the mailbox (or list).
  std::string read_text;
};

/// `tag` cut or padded with 'x' to `bytes`.
std::string padded(std::string tag, size_t bytes) {
  if (tag.size() > bytes)
    tag.resize(bytes);
  else
    tag.append(bytes - tag.size(), 'x');
  return tag;
}

std::string random_prefix() {
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device rd;
  std::string out;
  for (int i = 0; i < 6; ++i)
    out += alphabet[rd() % (sizeof(alphabet) - 1)];
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_cookie_reply(std::string_view reply) {
  if (!starts_with(reply, "OK "))
    return false;
  auto cookie = reply.substr(3);
  if (cookie.size() < 32)
    return false;
  return std::all_of(cookie.begin(), cookie.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool is_counted_reply(std::string_view reply) {
  if (!starts_with(reply, "COUNTED ") || reply.size() == 8)
    return false;
  auto n = reply.substr(8);
  return std::all_of(n.begin(), n.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// Gets a live session for `u`. A user left over from an earlier run with the
// same --user-prefix is logged in instead, so fixed prefixes can be reused.
void prepare_user(smsp::line_client& lc, bench_user& u, workload kind) {
  auto reply = lc.call("REGISTER " + u.name + " " + u.password);
  if (!is_cookie_reply(reply)) {
    auto login = lc.call("LOGIN " + u.name + " " + u.password);
    if (!is_cookie_reply(login))
      throw std::runtime_error("REGISTER " + u.name + " got '"
                               + printable(reply) + "', LOGIN got '"
                               + printable(login) + "'");
    reply = login;
  }
  u.cookie = reply.substr(3);
  if (kind != workload::mailbox && kind != workload::mail
      && kind != workload::read)
    return;
  // The mailbox workload checks every GETMSG against the text it just
  // stored: mail left by an interrupted earlier run must go first.
  auto count = lc.call("COUNT " + u.name + " " + u.cookie);
  if (!is_counted_reply(count))
    throw std::runtime_error("COUNT " + u.name + " got '" + printable(count)
                             + "'");
  auto n = std::stoull(count.substr(8));
  for (uint64_t i = 0; i < n; ++i) {
    auto del = lc.call("DELMSG " + u.name + " " + u.cookie);
    if (del != "OK")
      throw std::runtime_error("DELMSG " + u.name + " got '" + printable(del)
                               + "'");
  }
  if (kind != workload::read)
    return;
  // The read mix reads this one message over and over.
  for (auto request : {"MESSAGE " + u.read_text + " " + u.cookie,
                       "STORE " + u.name + " " + u.cookie})
    if (auto r = lc.call(request); r != "OK")
      throw std::runtime_error(request.substr(0, request.find(' ')) + " for "
                               + u.name + " got '" + printable(r) + "'");
}

/// Redis: empties the user's list (left over from an interrupted run), and
/// for the read mix puts the one message there.
void prepare_key(smsp::line_client& lc, bench_user& u, workload kind) {
  auto del = lc.call("DEL " + u.name, smsp::terminator::crlf);
  if (del != ":0" && del != ":1")
    throw std::runtime_error("DEL " + u.name + " got '" + printable(del) + "'");
  if (kind != workload::read)
    return;
  auto push = lc.call("RPUSH " + u.name + " " + u.read_text,
                      smsp::terminator::crlf);
  if (push != ":1")
    throw std::runtime_error("RPUSH " + u.name + " got '" + printable(push)
                             + "'");
}

// Argon2id makes REGISTER deliberately slow: spread it over several
// connections so the server's hashing pool is kept busy.
void setup_users(const options& opt, std::vector<bench_user>& users) {
  auto n = std::min(opt.setup_connections, users.size());
  std::vector<std::thread> threads;
  std::vector<std::string> failures(n);
  std::atomic<size_t> next{0};
  for (size_t t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      try {
        smsp::line_client lc{opt.host, opt.port, std::chrono::seconds{120}};
        for (auto i = next.fetch_add(1); i < users.size();
             i = next.fetch_add(1))
          if (opt.server == target::redis)
            prepare_key(lc, users[i], opt.kind);
          else
            prepare_user(lc, users[i], opt.kind);
      } catch (const std::exception& e) {
        failures[t] = e.what();
        // Makes the other setup threads stop early.
        next.store(users.size());
      }
    });
  }
  for (auto& t : threads)
    t.join();
  for (auto& f : failures)
    if (!f.empty())
      throw std::runtime_error("setup failed: " + f);
}

// -- connections and the epoll loop -------------------------------------------

struct connection {
  int fd = -1;
  size_t index = 0;
  const bench_user* me = nullptr;
  bool open = true;
  bool want_write = false;
  // Requests that never change, prebuilt so the loop only copies bytes.
  std::string fixed_a;
  std::string fixed_b;
  std::string fixed_c;
  std::string fixed_d;
  /// Redis: the next line is the body of a bulk string ("$N" came first).
  bool bulk_next = false;
  std::string out;
  size_t out_off = 0;
  std::string in;
  // Send times of the requests in flight, oldest first (ring of size K).
  std::vector<time_point> sent;
  size_t sent_head = 0;
  size_t in_flight = 0;
  uint64_t sent_seq = 0;
  uint64_t reply_seq = 0;
};

struct worker_result {
  histogram latency;
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t dropped = 0;
  double cpu_seconds = 0;
  double cpu_window = 0;
};

double thread_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

class worker {
public:
  worker(const options& opt, std::vector<connection*> conns)
    : opt_(opt), conns_(std::move(conns)), scratch_(64 * 1024) {
  }

  ~worker() {
    if (epfd_ >= 0)
      ::close(epfd_);
  }

  void run(time_point start, time_point measure_from, time_point stop) {
    stop_ = stop;
    measure_from_ = measure_from;
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0)
      throw std::runtime_error(std::string{"epoll_create1: "}
                               + std::strerror(errno));
    for (auto* c : conns_) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = c;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        throw std::runtime_error(std::string{"epoll_ctl: "}
                                 + std::strerror(errno));
    }
    open_ = conns_.size();
    std::this_thread::sleep_until(start);
    auto now = clock_type::now();
    for (auto* c : conns_) {
      for (size_t k = 0; k < opt_.pipeline; ++k)
        issue(*c, now);
      flush(*c);
    }
    bool measuring = false;
    double cpu_start = 0;
    std::vector<epoll_event> events(std::max<size_t>(conns_.size(), 1));
    for (;;) {
      now = clock_type::now();
      if (!measuring && now >= measure_from_) {
        measuring = true;
        cpu_start = thread_cpu_seconds();
      }
      if (now >= stop_ || open_ == 0)
        break;
      // Wake up at the window edges even when the server goes silent.
      auto edge = measuring ? stop_ : measure_from_;
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(edge - now);
      auto timeout
        = static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 100));
      auto n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()),
                          timeout);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        throw std::runtime_error(std::string{"epoll_wait: "}
                                 + std::strerror(errno));
      }
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<connection*>(events[i].data.ptr);
        if (!c->open)
          continue;
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
          on_readable(*c);
        if (c->open && (events[i].events & EPOLLOUT))
          flush(*c);
      }
    }
    if (measuring) {
      result_.cpu_seconds = thread_cpu_seconds() - cpu_start;
      result_.cpu_window
        = std::chrono::duration<double>(clock_type::now() - measure_from_)
            .count();
    }
    for (auto* c : conns_) {
      if (c->fd >= 0) {
        ::close(c->fd);
        c->fd = -1;
      }
    }
  }

  const worker_result& result() const {
    return result_;
  }

private:
  // Text of MESSAGE number `cycle` on connection `c`: unique while there is
  // room, so a GETMSG returning stale or foreign mail is caught.
  void make_text(const connection& c, uint64_t cycle, std::string& out) const {
    out.clear();
    out += 'c';
    out += std::to_string(c.index);
    out += 'n';
    out += std::to_string(cycle);
    if (out.size() > opt_.text_bytes)
      out.resize(opt_.text_bytes);
    else
      out.append(opt_.text_bytes - out.size(), 'x');
  }

  void append_message(connection& c, uint64_t cycle) {
    make_text(c, cycle, text_);
    if (opt_.server == target::redis) {
      c.out += "RPUSH ";
      c.out += c.me->name;
      c.out += ' ';
      c.out += text_;
      c.out += "\r\n";
      return;
    }
    c.out += "MESSAGE ";
    c.out += text_;
    c.out += ' ';
    c.out += c.me->cookie;
    c.out += '\n';
  }

  void issue(connection& c, time_point now) {
    auto seq = c.sent_seq++;
    switch (opt_.kind) {
      case workload::count:
      case workload::login:
        c.out += c.fixed_a;
        break;
      case workload::message_store:
        if (seq % 2 == 0)
          append_message(c, seq / 2);
        else
          c.out += c.fixed_a;
        break;
      case workload::mailbox:
      case workload::mail: {
        // MESSAGE (RPUSH), then the fixed requests of the cycle.
        auto len = cycle_length(opt_);
        auto step = seq % len;
        if (step == 0) {
          append_message(c, seq / len);
          break;
        }
        const std::string* fixed[] = {&c.fixed_a, &c.fixed_b, &c.fixed_c,
                                      &c.fixed_d};
        c.out += *fixed[step - 1];
        break;
      }
      case workload::read:
        c.out += seq % 2 == 0 ? c.fixed_a : c.fixed_b;
        break;
    }
    c.sent[(c.sent_head + c.in_flight) % c.sent.size()] = now;
    ++c.in_flight;
  }

  const char* request_name(uint64_t seq) const {
    bool redis = opt_.server == target::redis;
    switch (opt_.kind) {
      case workload::count:
        return redis ? "LLEN" : "COUNT";
      case workload::login:
        return "LOGIN";
      case workload::message_store:
        return seq % 2 == 0 ? "MESSAGE" : "STORE";
      case workload::read:
        if (redis)
          return seq % 2 == 0 ? "LLEN" : "LINDEX";
        return seq % 2 == 0 ? "COUNT" : "GETMSG";
      case workload::mail:
        if (redis) {
          static constexpr const char* names[] = {"RPUSH", "LLEN", "LINDEX",
                                                  "LPOP"};
          return names[seq % 4];
        } else {
          static constexpr const char* names[] = {"MESSAGE", "STORE", "COUNT",
                                                  "GETMSG", "DELMSG"};
          return names[seq % 5];
        }
      case workload::mailbox:
        break;
    }
    static constexpr const char* names[] = {"MESSAGE", "STORE", "GETMSG",
                                            "DELMSG"};
    return names[seq % 4];
  }

  /// Whether `reply` is a Redis integer reply ":N".
  static bool is_integer_reply(std::string_view reply) {
    return reply.size() > 1 && reply[0] == ':'
           && std::all_of(reply.begin() + 1, reply.end(),
                          [](char x) { return x >= '0' && x <= '9'; });
  }

  /// A Redis reply: `bulk` for the body of a bulk string, else the line.
  bool check_redis(const connection& c, uint64_t seq, std::string_view reply,
                   bool bulk) {
    switch (opt_.kind) {
      case workload::count:
        return !bulk && is_integer_reply(reply);
      case workload::read:
        if (seq % 2 == 0)
          return !bulk && reply == ":1";
        return bulk && reply == c.me->read_text;
      case workload::mail:
        switch (seq % 4) {
          case 0:
          case 1:
            // The list holds this cycle's message only.
            return !bulk && reply == ":1";
          default:
            make_text(c, seq / 4, text_);
            return bulk && reply == text_;
        }
      default:
        return false;
    }
  }

  bool check(const connection& c, uint64_t seq, std::string_view reply,
             bool bulk) {
    if (opt_.server == target::redis)
      return check_redis(c, seq, reply, bulk);
    switch (opt_.kind) {
      case workload::count:
        return is_counted_reply(reply);
      case workload::login:
        return is_cookie_reply(reply);
      case workload::message_store:
        return reply == "OK";
      case workload::mailbox:
        if (seq % 4 != 2)
          return reply == "OK";
        if (!starts_with(reply, "OK "))
          return false;
        make_text(c, seq / 4, text_);
        return reply.substr(3) == text_;
      case workload::read:
        if (seq % 2 == 0)
          return reply == "COUNTED 1";
        return starts_with(reply, "OK ") && reply.substr(3) == c.me->read_text;
      case workload::mail:
        switch (seq % 5) {
          case 2:
            // Requests are served in order: only this cycle's message waits.
            return reply == "COUNTED 1";
          case 3:
            make_text(c, seq / 5, text_);
            return starts_with(reply, "OK ") && reply.substr(3) == text_;
          default:
            return reply == "OK";
        }
    }
    return false;
  }

  void on_reply(connection& c, std::string_view reply, time_point now) {
    if (!reply.empty() && reply.back() == '\r')
      reply.remove_suffix(1);
    bool bulk = false;
    if (opt_.server == target::redis) {
      // A bulk string is two lines, "$N" and its body (the bench's texts
      // hold no CR or LF); "$-1" (nil) is a reply of its own.
      if (c.bulk_next) {
        c.bulk_next = false;
        bulk = true;
      } else if (reply.size() > 1 && reply[0] == '$' && reply[1] != '-') {
        c.bulk_next = true;
        return;
      }
    }
    if (c.in_flight == 0) {
      ++result_.errors;
      report_problem("connection " + std::to_string(c.index)
                     + ": reply without a request: '" + printable(reply) + "'");
      return;
    }
    auto sent_at = c.sent[c.sent_head];
    c.sent_head = (c.sent_head + 1) % c.sent.size();
    --c.in_flight;
    auto seq = c.reply_seq++;
    if (!check(c, seq, reply, bulk)) {
      ++result_.errors;
      report_problem("connection " + std::to_string(c.index) + ", request "
                     + std::to_string(seq) + " (" + request_name(seq)
                     + "): unexpected reply '" + printable(reply) + "'");
    }
    if (now >= measure_from_ && now < stop_) {
      ++result_.requests;
      result_.latency.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at)
          .count()));
    }
    if (now < stop_)
      issue(c, now);
  }

  void drop(connection& c, const std::string& why) {
    if (clock_type::now() >= stop_)
      return;
    ++result_.dropped;
    report_problem("connection " + std::to_string(c.index) + " dropped: " + why
                   + " (" + std::to_string(c.in_flight)
                   + " requests unanswered)");
    c.open = false;
    --open_;
    epoll_ctl(epfd_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    c.fd = -1;
  }

  void on_readable(connection& c) {
    ssize_t n;
    do {
      n = ::recv(c.fd, scratch_.data(), scratch_.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
      drop(c, "the server closed the connection");
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        drop(c, std::strerror(errno));
      return;
    }
    auto now = clock_type::now();
    std::string_view data{scratch_.data(), static_cast<size_t>(n)};
    // A reply split across reads waits in c.in; the common case of whole
    // replies is parsed straight from the scratch buffer.
    if (!c.in.empty()) {
      c.in.append(data);
      data = c.in;
    }
    size_t pos = 0;
    for (;;) {
      auto end = data.find('\n', pos);
      if (end == std::string_view::npos)
        break;
      on_reply(c, data.substr(pos, end - pos), now);
      pos = end + 1;
    }
    if (c.in.empty())
      c.in.assign(data.substr(pos));
    else
      c.in.erase(0, pos);
    // No valid reply is longer than a request; a server that never sends a
    // terminator must not make the bench buffer without bound.
    if (c.in.size() > max_reply_bytes + opt_.text_bytes) {
      drop(c, "reply longer than " + std::to_string(c.in.size())
                + " bytes without a terminator");
      return;
    }
    flush(c);
  }

  void set_want_write(connection& c, bool on) {
    if (c.want_write == on)
      return;
    c.want_write = on;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.ptr = &c;
    epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void flush(connection& c) {
    while (c.out_off < c.out.size()) {
      auto n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                      MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          set_want_write(c, true);
          return;
        }
        drop(c, std::strerror(errno));
        return;
      }
      c.out_off += static_cast<size_t>(n);
    }
    c.out.clear();
    c.out_off = 0;
    set_want_write(c, false);
  }

  const options& opt_;
  std::vector<connection*> conns_;
  std::vector<char> scratch_;
  std::string text_;
  int epfd_ = -1;
  size_t open_ = 0;
  time_point measure_from_;
  time_point stop_;
  worker_result result_;
};

int open_connection(const addrinfo& ai) {
  int fd = ::socket(ai.ai_family, ai.ai_socktype | SOCK_CLOEXEC,
                    ai.ai_protocol);
  if (fd < 0)
    throw std::runtime_error(std::string{"socket: "} + std::strerror(errno));
  if (::connect(fd, ai.ai_addr, ai.ai_addrlen) < 0) {
    auto err = errno;
    ::close(fd);
    throw std::runtime_error(std::string{"connect: "} + std::strerror(err));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Each bench connection needs one descriptor; raise the soft limit as far as
// allowed instead of failing halfway through connecting.
void ensure_fd_limit(size_t needed) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= needed)
    return;
  rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, needed);
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < needed)
    throw std::runtime_error(
      "--connections needs about " + std::to_string(needed)
      + " file descriptors, the limit is " + std::to_string(rl.rlim_max));
}

/// CPU seconds (user + system) of another process, from /proc.
std::optional<double> process_cpu_seconds(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string line;
  if (!pid || !std::getline(in, line))
    return std::nullopt;
  // The command name in field 2 may contain spaces: start after its ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos)
    return std::nullopt;
  std::istringstream fields{line.substr(close + 2)};
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // Fields 3.. follow; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14)
      utime = std::stoull(field);
    else if (i == 15)
      stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime)
         / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (auto c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

constexpr const char* help_footer = R"(
Mixes (--mix, also --workload; each connection uses its own bench user, and
one cycle is the mix's requests in order; results are given in requests and
in cycles per second):
  mail           MESSAGE, STORE to self, COUNT (must be 1), GETMSG (text
                 checked), DELMSG. With --target redis: RPUSH <me> <text>,
                 LLEN (must be 1), LINDEX <me> 0 and LPOP (text checked)
  read           COUNT and GETMSG of one message stored at setup (checked).
                 With --target redis: LLEN and LINDEX <me> 0
  count          COUNT <me> <cookie>: the cheapest authenticated request.
                 With --target redis: LLEN <me>
  store          MESSAGE <text> <cookie>, then STORE <peer> <cookie>; the
                 peer is the next connection's user (also: message-store)
  mailbox        MESSAGE, STORE to self, GETMSG (text checked), DELMSG
  login          LOGIN <user> <password>: password hashing throughput

Setup registers one user per connection (b<prefix>u<i>, password benchpw<i>)
over --setup-connections connections before the clock starts; for Redis it
empties the list of key b<prefix>u<i> (and for read pushes its message). The server
hashes passwords with Argon2id, so setup (and the login workload) is slow
unless the server runs with --pwhash min. An existing user (a reused
--user-prefix) is logged in instead.

Each connection keeps --pipeline requests in flight. Every reply is checked;
the exit status is 1 when any reply was unexpected, a connection dropped or
the run could not start, 2 for a bad option. The run always ends after warmup + duration.
The client's own CPU time is reported: near 100 % of a core per thread means
the bench, not the server, may be the limit (try --threads 2).
)";

int run(const options& opt) {
  // Setup.
  std::vector<bench_user> users(opt.connections);
  auto prefix = opt.user_prefix.empty() ? random_prefix() : opt.user_prefix;
  for (size_t i = 0; i < users.size(); ++i) {
    users[i].name = "b" + prefix + "u" + std::to_string(i);
    users[i].password = "benchpw" + std::to_string(i);
    users[i].read_text = padded("r" + users[i].name, opt.text_bytes);
  }
  if (users.back().name.size() > 32)
    throw std::runtime_error("user names would exceed 32 characters: use a "
                             "shorter --user-prefix");
  ensure_fd_limit(opt.connections + opt.setup_connections + 32);
  auto setup_start = clock_type::now();
  setup_users(opt, users);
  auto setup_secs
    = std::chrono::duration<double>(clock_type::now() - setup_start).count();
  std::fprintf(stderr, "smsp-bench: set up %zu %s (b%su0..) in %.2f s\n",
               users.size(),
               opt.server == target::redis ? "list keys" : "users",
               prefix.c_str(), setup_secs);
  if (opt.server == target::smsp
      && setup_secs / static_cast<double>(users.size()) > 0.05)
    std::fprintf(stderr, "smsp-bench: hint: setup is slow because the server "
                         "hashes with Argon2id; start it with --pwhash min\n");

  // Bench connections, opened before the clock starts.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  auto service = std::to_string(opt.port);
  if (auto rc = getaddrinfo(opt.host.c_str(), service.c_str(), &hints, &found))
    throw std::runtime_error("cannot resolve " + opt.host + ": "
                             + gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard{found, freeaddrinfo};
  std::vector<connection> conns(opt.connections);
  for (size_t i = 0; i < conns.size(); ++i) {
    auto& c = conns[i];
    c.index = i;
    c.me = &users[i];
    c.sent.resize(opt.pipeline);
    const auto& me = users[i];
    const auto& peer = users[(i + 1) % users.size()];
    if (opt.server == target::redis) {
      // Inline commands; the texts and keys hold no spaces.
      c.fixed_a = "LLEN " + me.name + "\r\n";
      if (opt.kind == workload::read) {
        c.fixed_b = "LINDEX " + me.name + " 0\r\n";
      } else if (opt.kind == workload::mail) {
        c.fixed_b = "LINDEX " + me.name + " 0\r\n";
        c.fixed_c = "LPOP " + me.name + "\r\n";
      }
    }
    if (opt.server == target::smsp)
      switch (opt.kind) {
        case workload::count:
          c.fixed_a = "COUNT " + me.name + " " + me.cookie + "\n";
          break;
        case workload::login:
          c.fixed_a = "LOGIN " + me.name + " " + me.password + "\n";
          break;
        case workload::message_store:
          c.fixed_a = "STORE " + peer.name + " " + me.cookie + "\n";
          break;
        case workload::mailbox:
          c.fixed_a = "STORE " + me.name + " " + me.cookie + "\n";
          c.fixed_b = "GETMSG " + me.name + " " + me.cookie + "\n";
          c.fixed_c = "DELMSG " + me.name + " " + me.cookie + "\n";
          break;
        case workload::mail:
          c.fixed_a = "STORE " + me.name + " " + me.cookie + "\n";
          c.fixed_b = "COUNT " + me.name + " " + me.cookie + "\n";
          c.fixed_c = "GETMSG " + me.name + " " + me.cookie + "\n";
          c.fixed_d = "DELMSG " + me.name + " " + me.cookie + "\n";
          break;
        case workload::read:
          c.fixed_a = "COUNT " + me.name + " " + me.cookie + "\n";
          c.fixed_b = "GETMSG " + me.name + " " + me.cookie + "\n";
          break;
      }
    try {
      c.fd = open_connection(*found);
    } catch (const std::exception& e) {
      for (auto& other : conns)
        if (other.fd >= 0)
          ::close(other.fd);
      throw std::runtime_error("cannot open bench connection "
                               + std::to_string(i) + " to " + opt.host + ":"
                               + service + ": " + e.what());
    }
  }

  // Round-robin so every thread gets the same share of connections.
  std::vector<std::unique_ptr<worker>> workers;
  for (size_t t = 0; t < opt.threads; ++t) {
    std::vector<connection*> mine;
    for (size_t i = t; i < conns.size(); i += opt.threads)
      mine.push_back(&conns[i]);
    workers.push_back(std::make_unique<worker>(opt, std::move(mine)));
  }
  using fsecs = std::chrono::duration<double>;
  // Leaves the threads time to register their sockets with epoll first.
  auto start = clock_type::now() + std::chrono::milliseconds{20};
  auto measure_from
    = start
      + std::chrono::duration_cast<clock_type::duration>(fsecs{opt.warmup});
  auto stop
    = measure_from
      + std::chrono::duration_cast<clock_type::duration>(fsecs{opt.duration});
  std::vector<std::string> failures(opt.threads);
  std::vector<std::thread> threads;
  std::atomic<size_t> finished{0};
  for (size_t t = 0; t < opt.threads; ++t)
    threads.emplace_back([&, t] {
      try {
        workers[t]->run(start, measure_from, stop);
      } catch (const std::exception& e) {
        failures[t] = e.what();
      }
      ++finished;
    });
  // Workers end early when all their connections dropped: don't sit out the
  // rest of the window then.
  auto wait_until = [&](time_point t) {
    while (finished < opt.threads && clock_type::now() < t)
      std::this_thread::sleep_for(std::min<clock_type::duration>(
        t - clock_type::now(), std::chrono::milliseconds{50}));
  };
  wait_until(measure_from);
  auto server_cpu_start = process_cpu_seconds(opt.server_pid);
  wait_until(stop);
  auto server_cpu_end = process_cpu_seconds(opt.server_pid);
  for (auto& t : threads)
    t.join();
  for (auto& f : failures)
    if (!f.empty())
      throw std::runtime_error(f);

  // Results.
  worker_result total;
  double busiest = 0;
  double window = 0;
  for (auto& w : workers) {
    const auto& r = w->result();
    total.latency.merge(r.latency);
    total.requests += r.requests;
    total.errors += r.errors;
    total.dropped += r.dropped;
    total.cpu_seconds += r.cpu_seconds;
    window = std::max(window, r.cpu_window);
    if (r.cpu_window > 0)
      busiest = std::max(busiest, r.cpu_seconds / r.cpu_window);
  }
  if (window <= 0)
    window = opt.duration;
  auto rps = static_cast<double>(total.requests) / window;
  auto cps = rps / static_cast<double>(cycle_length(opt));
  auto us = [&](double q) {
    return static_cast<double>(total.latency.quantile(q)) / 1000.0;
  };
  auto max_us = static_cast<double>(total.latency.max()) / 1000.0;
  auto cpu_share = total.cpu_seconds / window;
  std::optional<double> server_cpu;
  if (server_cpu_start && server_cpu_end)
    server_cpu = *server_cpu_end - *server_cpu_start;
  if (opt.json) {
    std::printf("{\"target\":%s,\"workload\":%s,\"cycle_requests\":%zu,"
                "\"host\":%s,\"port\":%u,\"connections\":%zu,"
                "\"pipeline\":%zu,\"threads\":%zu,\"text_bytes\":%zu,"
                "\"warmup_s\":%.3f,\"duration_s\":%.3f,\"requests\":%" PRIu64
                ",\"requests_per_s\":%.1f,\"cycles_per_s\":%.1f,"
                "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
                "\"p99_9\":%.1f,\"max\":%.1f},\"errors\":%" PRIu64
                ",\"dropped\":%" PRIu64 ",\"client_cpu_s\":%.3f,"
                "\"client_cpu_share\":%.3f,\"client_busiest_thread\":%.3f",
                json_string(opt.target_name).c_str(),
                json_string(opt.workload_name).c_str(), cycle_length(opt),
                json_string(opt.host).c_str(), static_cast<unsigned>(opt.port),
                opt.connections, opt.pipeline, opt.threads, opt.text_bytes,
                opt.warmup, window, total.requests, rps, cps, us(0.5), us(0.9),
                us(0.99), us(0.999), max_us, total.errors, total.dropped,
                total.cpu_seconds, cpu_share, busiest);
    if (server_cpu)
      std::printf(",\"server_cpu_s\":%.3f,\"server_cpu_share\":%.3f",
                  *server_cpu, *server_cpu / window);
    std::printf("}\n");
  } else {
    std::printf("workload       %s on %s: %zu connections x pipeline %zu, "
                "%zu thread(s), %s:%u\n",
                opt.workload_name.c_str(), opt.target_name.c_str(),
                opt.connections, opt.pipeline, opt.threads, opt.host.c_str(),
                static_cast<unsigned>(opt.port));
    std::printf("window         %.2f s measured after %.2f s warmup\n", window,
                opt.warmup);
    std::printf("requests       %" PRIu64 "\n", total.requests);
    std::printf("throughput     %.0f req/s = %.0f cycles/s (%zu requests "
                "each)\n",
                rps, cps, cycle_length(opt));
    std::printf("latency (us)   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max "
                "%.1f\n",
                us(0.5), us(0.9), us(0.99), us(0.999), max_us);
    std::printf("errors         %" PRIu64 "\n", total.errors);
    std::printf("dropped        %" PRIu64 "\n", total.dropped);
    std::printf("client CPU     %.2f s = %.0f %% of one core (busiest thread "
                "%.0f %%)\n",
                total.cpu_seconds, 100 * cpu_share, 100 * busiest);
    if (server_cpu)
      std::printf("server CPU     %.2f s = %.0f %% of one core\n", *server_cpu,
                  100 * *server_cpu / window);
  }
  std::fflush(stdout);
  if (busiest > 0.9)
    std::fprintf(stderr,
                 "smsp-bench: warning: a bench thread was busy %.0f %% "
                 "of the window: the client may be the bottleneck\n",
                 100 * busiest);
  if (total.errors > 0 || total.dropped > 0) {
    std::fprintf(stderr,
                 "smsp-bench: FAILED: %" PRIu64 " unexpected replies, "
                 "%" PRIu64 " dropped connections\n",
                 total.errors, total.dropped);
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{"smsp-bench: load generator for an SMSP server"};
  app.footer(help_footer);
  app.add_option("--host", opt.host, "server address")->capture_default_str();
  app.add_option("--port", opt.port, "server port")->capture_default_str();
  app.add_option("--connections,-c", opt.connections, "concurrent connections")
    ->capture_default_str()
    ->check(CLI::Range(1, 100000));
  app
    .add_option("--pipeline,-k", opt.pipeline,
                "requests in flight per connection")
    ->capture_default_str()
    ->check(CLI::Range(1, 100000));
  app.add_option("--duration,-d", opt.duration, "measured seconds")
    ->capture_default_str()
    ->check(CLI::Range(0.001, 86400.0));
  app.add_option("--warmup", opt.warmup, "seconds run before measuring")
    ->capture_default_str()
    ->check(CLI::Range(0.0, 86400.0));
  app
    .add_option("--mix,--workload,-w", opt.workload_name,
                "mail | read | count | store | mailbox | login (see below)")
    ->capture_default_str()
    ->check(CLI::IsMember(
      {"mail", "read", "count", "store", "message-store", "mailbox", "login"}));
  app
    .add_option("--target", opt.target_name,
                "smsp | redis: the kind of server at --host/--port")
    ->capture_default_str()
    ->check(CLI::IsMember({"smsp", "redis"}));
  app
    .add_option("--text-bytes", opt.text_bytes,
                "MESSAGE text size (message-store, mailbox)")
    ->capture_default_str()
    ->check(CLI::Range(1, 1 << 20));
  app.add_option("--threads,-t", opt.threads, "epoll threads driving the load")
    ->capture_default_str()
    ->check(CLI::Range(1, 256));
  app
    .add_option("--setup-connections", opt.setup_connections,
                "connections registering users before the run")
    ->capture_default_str()
    ->check(CLI::Range(1, 256));
  app
    .add_option("--user-prefix", opt.user_prefix,
                "user name prefix (a-zA-Z0-9; default: random per run)")
    ->check([](const std::string& s) {
      if (s.empty() || s.size() > 20
          || !std::all_of(s.begin(), s.end(),
                          [](unsigned char c) { return std::isalnum(c); }))
        return std::string{"must be 1-20 characters of a-zA-Z0-9"};
      return std::string{};
    });
  app.add_option("--server-pid", opt.server_pid,
                 "also report this process's CPU time over the window");
  app.add_flag("--json", opt.json, "print the result as one JSON line");
  app.set_version_flag("--version", "smsp-bench " SMSP_VERSION,
                       "print the version and exit");
  // Exit codes as in smsp-actors: 0 success, 1 a failure at run time, 2 a
  // usage error.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? 0 : 2;
  }
  if (opt.workload_name == "count")
    opt.kind = workload::count;
  else if (opt.workload_name == "message-store" || opt.workload_name == "store")
    opt.kind = workload::message_store;
  else if (opt.workload_name == "mailbox")
    opt.kind = workload::mailbox;
  else if (opt.workload_name == "mail")
    opt.kind = workload::mail;
  else if (opt.workload_name == "read")
    opt.kind = workload::read;
  else
    opt.kind = workload::login;
  opt.server = opt.target_name == "redis" ? target::redis : target::smsp;
  if (opt.server == target::redis && opt.kind != workload::mail
      && opt.kind != workload::read && opt.kind != workload::count) {
    std::fprintf(stderr, "smsp-bench: --target redis runs the mixes mail, "
                         "read and count (the others have no Redis "
                         "equivalent)\n");
    return 2;
  }
  opt.threads = std::min(opt.threads, opt.connections);
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smsp-bench: %s\n", e.what());
    return 1;
  }
}
