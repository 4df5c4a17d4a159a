// smsp-bench: a bounded, checking load generator for SMSP servers (epoll).
#include "app/bench_histogram.hpp"
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
#include <map>
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
#include <sys/stat.h>
#include <unistd.h>

namespace {

using smsp::bench::histogram;
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
  /// Distinct bench users; 0: one per connection.
  size_t users = 0;
  double timeout = 30;
  int server_pid = 0;
  bool json = false;
  /// --json FILE: the JSON line goes there, the text report to stdout.
  std::string json_file;
  std::string csv_path;
  std::string plot_path;
};

/// Whether connections share users, so a mailbox (or list) holds the mail of
/// several connections and a reply can only be checked for its shape.
bool shared_users(const options& opt) {
  return opt.users < opt.connections;
}

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

/// Errors counted by kind ("wrong reply", "KO <reason>", "connection
/// closed", ...), each with the first example seen.
struct error_kinds {
  struct entry {
    uint64_t count = 0;
    std::string example;
  };

  // Distinct KO reasons kept apart; a server inventing reasons without end
  // must not grow the map without bound: past this many kinds, new ones
  // count as "other" (one more kind).
  static constexpr size_t max_kinds = 32;

  std::map<std::string, entry> kinds;

  void add(const std::string& kind, const std::string& example,
           uint64_t n = 1) {
    auto i = kinds.find(kind);
    if (i == kinds.end()) {
      if (kinds.size() >= max_kinds && kind != "other") {
        add("other", kind + ": " + example, n);
        return;
      }
      i = kinds.emplace(kind, entry{0, example}).first;
    }
    i->second.count += n;
  }

  void merge(const error_kinds& other) {
    for (auto& [kind, e] : other.kinds)
      add(kind, e.example, e.count);
  }

  uint64_t total() const {
    uint64_t n = 0;
    for (auto& [kind, e] : kinds)
      n += e.count;
    return n;
  }
};

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
void start_session(smsp::line_client& lc, bench_user& u) {
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
}

// Leaves the mailbox as the mix expects it.
void prepare_mailbox(smsp::line_client& lc, bench_user& u, workload kind) {
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

// Above this, a LOGIN is taken to hash at full cost (Argon2id's interactive
// limits take tens of ms a hash; --pwhash min well under a millisecond).
constexpr double full_cost_login_ms = 20;

// Sets up the first user alone, timing its REGISTER and one LOGIN, to say
// before the others how long set-up will take and whether the server hashes
// at full cost. Returns how many users are done (1).
size_t time_first_user(const options& opt, std::vector<bench_user>& users) {
  using ms = std::chrono::duration<double, std::milli>;
  smsp::line_client lc{opt.host, opt.port, std::chrono::seconds{120}};
  auto& u = users.front();
  auto t0 = clock_type::now();
  start_session(lc, u);
  auto t1 = clock_type::now();
  auto login = lc.call("LOGIN " + u.name + " " + u.password);
  auto t2 = clock_type::now();
  if (!is_cookie_reply(login))
    throw std::runtime_error("setup failed: LOGIN " + u.name + " got '"
                             + printable(login) + "'");
  u.cookie = login.substr(3);
  prepare_mailbox(lc, u, opt.kind);
  auto register_ms = ms{t1 - t0}.count();
  auto login_ms = ms{t2 - t1}.count();
  auto rest = users.size() - 1;
  auto lanes = std::max<size_t>(1, std::min(opt.setup_connections, rest));
  // The server may hash fewer passwords at once than there are set-up
  // connections: then this is a lower bound.
  auto estimate = static_cast<double>(rest) * register_ms
                  / static_cast<double>(lanes) / 1000.0;
  std::fprintf(stderr,
               "smsp-bench: set-up: one REGISTER took %.1f ms, one LOGIN "
               "%.1f ms; %zu more users over %zu connections: about %.1f s "
               "(not measured)\n",
               register_ms, login_ms, rest, lanes, estimate);
  if (login_ms > full_cost_login_ms)
    std::fprintf(stderr,
                 "smsp-bench: warning: a LOGIN took %.0f ms: the server "
                 "hashes passwords at full cost (Argon2id); start it with "
                 "--pwhash min for a quick set-up and request-path "
                 "figures\n",
                 login_ms);
  return 1;
}

// Argon2id makes REGISTER deliberately slow: spread it over several
// connections so the server's hashing pool is kept busy.
void setup_users(const options& opt, std::vector<bench_user>& users) {
  size_t first = 0;
  if (opt.server == target::smsp)
    first = time_first_user(opt, users);
  auto n = std::min(opt.setup_connections, users.size() - first);
  std::vector<std::thread> threads;
  std::vector<std::string> failures(n);
  std::atomic<size_t> next{first};
  for (size_t t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      try {
        smsp::line_client lc{opt.host, opt.port, std::chrono::seconds{120}};
        for (auto i = next.fetch_add(1); i < users.size();
             i = next.fetch_add(1))
          if (opt.server == target::redis) {
            prepare_key(lc, users[i], opt.kind);
          } else {
            start_session(lc, users[i]);
            prepare_mailbox(lc, users[i], opt.kind);
          }
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
  /// Index of `me` in the users.
  size_t user_index = 0;
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

/// One second of the measured window (the last one may be shorter).
struct second_record {
  /// Its end and length in seconds, from the start of the window.
  double end_s = 0;
  double span_s = 0;
  uint64_t requests = 0;
  uint64_t errors = 0;
  /// Its latencies: the histogram's non-empty buckets and largest sample.
  std::vector<std::pair<uint32_t, uint64_t>> buckets;
  uint64_t max_ns = 0;
};

struct worker_result {
  histogram latency;
  uint64_t requests = 0;
  error_kinds errors;
  uint64_t error_count = 0;
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
  worker(const options& opt, std::vector<connection*> conns,
         const std::vector<bench_user>& users, size_t max_seconds)
    : opt_(opt),
      conns_(std::move(conns)),
      users_(users),
      scratch_(64 * 1024),
      seconds_(max_seconds),
      timeout_(std::chrono::duration_cast<clock_type::duration>(
        std::chrono::duration<double>{opt.timeout})) {
    // Any odd seed will do: the peers only need to spread.
    rng_ = 0x9e3779b97f4a7c15ull * (reinterpret_cast<uintptr_t>(this) | 1);
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
      // Connections that could not be opened are counted errors already.
      if (c->fd < 0)
        continue;
      ++open_;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = c;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        throw std::runtime_error(std::string{"epoll_ctl: "}
                                 + std::strerror(errno));
    }
    std::this_thread::sleep_until(start);
    auto now = clock_type::now();
    for (auto* c : conns_) {
      if (!c->open)
        continue;
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
        interval_start_ = measure_from_;
        next_tick_ = measure_from_ + std::chrono::seconds{1};
      }
      while (measuring && now >= next_tick_ && next_tick_ <= stop_) {
        close_interval(next_tick_);
        check_timeouts(now);
      }
      if (now >= stop_ || open_ == 0)
        break;
      // Wake up at the window edges and each second even when the server
      // goes silent.
      auto edge = measuring ? std::min(stop_, next_tick_) : measure_from_;
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
      // The last, shorter second, or the rest when all connections dropped.
      auto end = std::min(clock_type::now(), stop_);
      if (end > interval_start_ || interval_.count() > 0)
        close_interval(end);
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

  /// Complete per-second records, for the main thread while the worker
  /// runs: only the first published() of them, which the worker no longer
  /// touches.
  const second_record& second(size_t i) const {
    return seconds_[i];
  }

  /// Frees a published record's buckets once the main thread merged them.
  void release_second(size_t i) {
    std::vector<std::pair<uint32_t, uint64_t>>{}.swap(seconds_[i].buckets);
  }

  size_t published() const {
    return published_.load(std::memory_order_acquire);
  }

  uint64_t errors_seen() const {
    return errors_seen_.load(std::memory_order_relaxed);
  }

private:
  // Ends the current second at `end`: its record is published to the main
  // thread and its samples join the run's histogram. Once a second, so the
  // per-request path only records into one histogram.
  void close_interval(time_point end) {
    using fsecs = std::chrono::duration<double>;
    if (recorded_ < seconds_.size()) {
      auto& r = seconds_[recorded_];
      r.end_s = fsecs{end - measure_from_}.count();
      r.span_s = fsecs{end - interval_start_}.count();
      r.requests = interval_requests_;
      r.errors = interval_errors_;
      r.buckets = interval_.nonzero();
      r.max_ns = interval_.max();
      ++recorded_;
      published_.store(recorded_, std::memory_order_release);
    }
    result_.latency.merge(interval_);
    interval_.clear();
    interval_requests_ = 0;
    interval_errors_ = 0;
    interval_start_ = end;
    next_tick_ = end + std::chrono::seconds{1};
  }

  // A request unanswered for --timeout: its connection is given up (once a
  // second, so a silent server is noticed without a per-request timer).
  void check_timeouts(time_point now) {
    for (auto* c : conns_)
      if (c->open && c->in_flight > 0 && now - c->sent[c->sent_head] > timeout_)
        drop(*c, "timeout",
             "no reply within " + std::to_string(opt_.timeout) + " s");
  }

  void count_error(std::string kind, const std::string& what) {
    auto now = clock_type::now();
    result_.errors.add(kind, what);
    ++result_.error_count;
    errors_seen_.store(result_.error_count, std::memory_order_relaxed);
    if (now >= measure_from_ && now < stop_)
      ++interval_errors_;
    report_problem(what);
  }

  /// The kind of a wrong reply: a KO (or Redis error) by its reason, else
  /// "wrong reply".
  std::string reply_kind(std::string_view reply) const {
    constexpr size_t max_reason = 60;
    if (starts_with(reply, "KO")
        || (opt_.server == target::redis && starts_with(reply, "-")))
      return printable(reply.substr(0, max_reason));
    return "wrong reply";
  }

  uint64_t next_random() {
    // xorshift64: cheap, and the peers need no better.
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return rng_;
  }

  // STORE to a random other user of --users (to self when there is one).
  void append_store(connection& c) {
    auto peer = c.user_index;
    if (users_.size() > 1) {
      peer = static_cast<size_t>(next_random() % (users_.size() - 1));
      if (peer >= c.user_index)
        ++peer;
    }
    c.out += "STORE ";
    c.out += users_[peer].name;
    c.out += ' ';
    c.out += c.me->cookie;
    c.out += '\n';
  }

  /// Whether `text` has the shape of a MESSAGE text the bench sends: all a
  /// shared mailbox can be checked for, as any of its connections' texts
  /// may come first.
  bool is_bench_text(std::string_view text) const {
    return text.size() == opt_.text_bytes && text[0] == 'c';
  }

  /// Whether `reply` is ":N" (Redis) or "COUNTED N" with N >= 1.
  static bool is_positive_count(std::string_view reply, size_t skip) {
    if (reply.size() <= skip)
      return false;
    auto n = reply.substr(skip);
    return std::all_of(n.begin(), n.end(),
                       [](char x) { return x >= '0' && x <= '9'; })
           && n.find_first_not_of('0') != std::string_view::npos;
  }

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
          append_store(c);
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
        if (shared_users(opt_)) {
          if (seq % 4 < 2)
            return !bulk && starts_with(reply, ":")
                   && is_positive_count(reply, 1);
          return bulk && is_bench_text(reply);
        }
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
        if (shared_users(opt_))
          return is_bench_text(reply.substr(3));
        make_text(c, seq / 4, text_);
        return reply.substr(3) == text_;
      case workload::read:
        if (seq % 2 == 0)
          return reply == "COUNTED 1";
        return starts_with(reply, "OK ") && reply.substr(3) == c.me->read_text;
      case workload::mail:
        if (shared_users(opt_)) {
          // Each connection of a shared mailbox stores before it deletes,
          // so its own message is there or one that came before it.
          switch (seq % 5) {
            case 2:
              return starts_with(reply, "COUNTED ")
                     && is_positive_count(reply, 8);
            case 3:
              return starts_with(reply, "OK ")
                     && is_bench_text(reply.substr(3));
            default:
              return reply == "OK";
          }
        }
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
      count_error("reply without a request",
                  "connection " + std::to_string(c.index)
                    + ": reply without a request: '" + printable(reply) + "'");
      return;
    }
    auto sent_at = c.sent[c.sent_head];
    c.sent_head = (c.sent_head + 1) % c.sent.size();
    --c.in_flight;
    auto seq = c.reply_seq++;
    if (!check(c, seq, reply, bulk))
      count_error(reply_kind(reply),
                  "connection " + std::to_string(c.index) + ", request "
                    + std::to_string(seq) + " (" + request_name(seq)
                    + "): unexpected reply '" + printable(reply) + "'");
    if (now >= measure_from_ && now < stop_) {
      ++result_.requests;
      ++interval_requests_;
      interval_.record(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at)
          .count()));
    }
    if (now < stop_)
      issue(c, now);
  }

  void drop(connection& c, const std::string& kind, const std::string& why) {
    if (clock_type::now() >= stop_)
      return;
    ++result_.dropped;
    count_error(kind, "connection " + std::to_string(c.index) + " dropped: "
                        + why + " (" + std::to_string(c.in_flight)
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
      drop(c, "connection closed", "the server closed the connection");
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        drop(c, "connection error", std::strerror(errno));
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
      drop(c, "reply too long",
           "reply longer than " + std::to_string(c.in.size())
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
        drop(c, "connection error", std::strerror(errno));
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
  const std::vector<bench_user>& users_;
  std::vector<char> scratch_;
  std::string text_;
  int epfd_ = -1;
  size_t open_ = 0;
  time_point measure_from_;
  time_point stop_;
  worker_result result_;
  // The current second: samples and counts, merged into result_ at its end.
  histogram interval_;
  uint64_t interval_requests_ = 0;
  uint64_t interval_errors_ = 0;
  time_point interval_start_;
  time_point next_tick_;
  // Records of past seconds, sized for the whole run up front so they never
  // move: the worker fills seconds_[recorded_] and then publishes the count,
  // the main thread reads only published ones. No lock, one atomic store a
  // second.
  std::vector<second_record> seconds_;
  size_t recorded_ = 0;
  std::atomic<size_t> published_{0};
  std::atomic<uint64_t> errors_seen_{0};
  clock_type::duration timeout_;
  uint64_t rng_ = 0;
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
Mixes (--mix, also --workload; one cycle is the mix's requests in order;
results are given in requests and in cycles per second):
  mail           MESSAGE, STORE to self, COUNT (must be 1), GETMSG (text
                 checked), DELMSG. With --target redis: RPUSH <me> <text>,
                 LLEN (must be 1), LINDEX <me> 0 and LPOP (text checked)
  read           COUNT and GETMSG of one message stored at setup (checked).
                 With --target redis: LLEN and LINDEX <me> 0
  count          COUNT <me> <cookie>: the cheapest authenticated request.
                 With --target redis: LLEN <me>
  store          MESSAGE <text> <cookie>, then STORE <peer> <cookie> to a
                 random other user of --users (also: message-store)
  mailbox        MESSAGE, STORE to self, GETMSG (text checked), DELMSG
  login          LOGIN <user> <password>: password hashing throughput

Users: --users N bench users (default: one per connection), shared
round-robin when N < connections (a shared mailbox is checked for the shape
of the replies, not for which text arrives); N > connections only for the
store mix, whose STOREs go to random other users of the N. Names are
bench<prefix>u<i> (password benchpw<i>), <prefix> random per run unless
--user-prefix; for Redis the list keys are named the same. Set-up registers
(or, for a reused prefix, logs in) every user over --setup-connections
connections before the clock starts and is never measured; one REGISTER
and one LOGIN are timed first to print how long it will take, with a
warning when the server hashes at full cost (then start it with
--pwhash min).

Output: on a terminal, a live line once a second (second, requests/s,
cycles/s, p99 of that second, errors so far); none when stdout is not a
terminal. At the end: throughput, latency p50/p90/p99/p99.9/max (from a
log-linear histogram, within 0.4 %), errors by kind; --json prints it as one
JSON line instead. --csv FILE writes per-second rows
second,requests,cycles,p50_us,p99_us,errors (second: end of the interval in
seconds of the measured window; the last may be shorter) and a last row
'total' for the whole window. --plot FILE.png draws requests/s per second
and the latency by percentile with gnuplot (package gnuplot-nox).

Each connection keeps --pipeline requests in flight. Every reply is checked;
the exit status is 1 when any reply was unexpected, a connection dropped or
timed out, the run could not start, or --plot could not draw (gnuplot
missing or failing; the results are printed first); 2 for a bad option.
The run always ends after warmup + duration. The client's own CPU time is
reported: near 100 % of a core per thread means the bench, not the server,
may be the limit (try --threads 2).
)";

/// A second of the window over all workers: a row of --csv, a point of
/// --plot, the live line.
struct second_row {
  double end_s = 0;
  double span_s = 0;
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t p50_ns = 0;
  uint64_t p99_ns = 0;
};

/// Whether `name` is an executable file in a directory of $PATH.
bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    auto end = dirs.find(':', pos);
    if (end == std::string::npos)
      end = dirs.size();
    auto dir = dirs.substr(pos, end - pos);
    auto file = (dir.empty() ? std::string{"."} : dir) + "/" + name;
    if (::access(file.c_str(), X_OK) == 0)
      return true;
    pos = end + 1;
  }
  return false;
}

/// `s` as a gnuplot single-quoted string.
std::string gnuplot_string(const std::string& s) {
  std::string out = "'";
  for (auto c : s) {
    out += c;
    if (c == '\'')
      out += '\'';
  }
  return out + "'";
}

/// Draws the per-second throughput and the percentile curve into `png` with
/// gnuplot, fed a script on stdin and the data in a temporary directory.
/// Returns an empty string or what went wrong.
std::string draw_plot(const options& opt, const std::string& title,
                      const std::vector<second_row>& seconds,
                      const histogram& latency) {
  if (!on_path("gnuplot"))
    return "gnuplot is not installed (Debian: apt-get install gnuplot-nox); "
           "no plot drawn";
  char dir_template[] = "/tmp/smsp-bench-plot.XXXXXX";
  if (!::mkdtemp(dir_template))
    return std::string{"cannot make a temporary directory: "}
           + std::strerror(errno);
  std::string dir = dir_template;
  auto throughput_path = dir + "/throughput.dat";
  auto latency_path = dir + "/latency.dat";
  {
    std::ofstream out{throughput_path};
    for (auto& s : seconds)
      if (s.span_s > 0)
        out << s.end_s << ' ' << static_cast<double>(s.requests) / s.span_s
            << ' '
            << static_cast<double>(s.requests) / s.span_s
                 / static_cast<double>(cycle_length(opt))
            << '\n';
    // An empty file would make gnuplot fail; a run with no second has none.
    if (seconds.empty())
      out << "0 0 0\n";
  }
  {
    // The x axis is 1/(1-p), so that 90 %, 99 %, 99.9 % are equally far
    // apart; the last point (p = 1) is put one decade past the one before.
    std::ofstream out{latency_path};
    double last_x = 1;
    for (auto [p, ns] : latency.curve()) {
      auto x = p < 1 ? 1 / (1 - p) : last_x * 10;
      last_x = x;
      out << x << ' ' << static_cast<double>(ns) / 1000.0 << '\n';
    }
    if (latency.count() == 0)
      out << "1 0\n";
  }
  std::ostringstream script;
  script << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size 1000,900\n"
            "} else {\n"
            "  set terminal png size 1000,900\n"
            "}\n"
         << "set output " << gnuplot_string(opt.plot_path) << "\n"
         << "set multiplot layout 2,1 title " << gnuplot_string(title)
         << " noenhanced\n"
         << "set grid\n"
            "set title 'throughput per second'\n"
            "set xlabel 'second of the measured window'\n"
            "set ylabel 'per second'\n"
            "set xrange [0:*]\n"
            "set yrange [0:*]\n"
            "plot "
         << gnuplot_string(throughput_path)
         << " using 1:2 with linespoints title 'requests/s', '' using 1:3 "
            "with linespoints title 'cycles/s'\n"
            "set title 'latency by percentile'\n"
            "set xlabel 'percentile'\n"
            "set ylabel 'latency (us)'\n"
            "set logscale x\n"
            "set xrange [1:*]\n"
            "set autoscale xfixmax\n"
            "set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, "
            "'99.99%%' 10000, '99.999%%' 100000, '99.9999%%' 1000000)\n"
            "plot "
         << gnuplot_string(latency_path)
         << " using 1:2 with steps title 'latency'\n"
            "unset multiplot\n";
  std::string failure;
  // gnuplot's stdout is not ours: the results (or the JSON line) are.
  if (auto* gp = ::popen("gnuplot >/dev/null", "w")) {
    auto text = script.str();
    std::fwrite(text.data(), 1, text.size(), gp);
    auto status = ::pclose(gp);
    struct stat st {};
    if (status != 0)
      failure = "gnuplot failed (status " + std::to_string(status) + ")";
    else if (::stat(opt.plot_path.c_str(), &st) != 0 || st.st_size == 0)
      failure = "gnuplot wrote no " + opt.plot_path;
  } else {
    failure = std::string{"cannot run gnuplot: "} + std::strerror(errno);
  }
  ::unlink(throughput_path.c_str());
  ::unlink(latency_path.c_str());
  ::rmdir(dir.c_str());
  return failure;
}

/// The per-second rows and the 'total' row; false if the file cannot be
/// written.
bool write_csv(const options& opt, const std::vector<second_row>& seconds,
               uint64_t requests, const histogram& latency, uint64_t errors) {
  std::FILE* f = std::fopen(opt.csv_path.c_str(), "w");
  if (!f)
    return false;
  auto cycles = static_cast<double>(cycle_length(opt));
  std::fprintf(f, "second,requests,cycles,p50_us,p99_us,errors\n");
  for (auto& s : seconds)
    std::fprintf(f, "%.3f,%" PRIu64 ",%.1f,%.1f,%.1f,%" PRIu64 "\n", s.end_s,
                 s.requests, static_cast<double>(s.requests) / cycles,
                 static_cast<double>(s.p50_ns) / 1000.0,
                 static_cast<double>(s.p99_ns) / 1000.0, s.errors);
  // The whole window (warmup errors included), second = its length.
  std::fprintf(f, "total,%" PRIu64 ",%.1f,%.1f,%.1f,%" PRIu64 "\n", requests,
               static_cast<double>(requests) / cycles,
               static_cast<double>(latency.quantile(0.5)) / 1000.0,
               static_cast<double>(latency.quantile(0.99)) / 1000.0, errors);
  return std::fclose(f) == 0;
}

/// The live line of one second, overwriting the last one.
void print_live_line(const options& opt, const second_row& s, uint64_t errors) {
  auto rps = s.span_s > 0 ? static_cast<double>(s.requests) / s.span_s : 0.0;
  std::printf("\r%7.1f s  %9.0f req/s  %9.0f cycles/s  p99 %9.1f us  "
              "errors %" PRIu64 "\033[K",
              s.end_s, rps, rps / static_cast<double>(cycle_length(opt)),
              static_cast<double>(s.p99_ns) / 1000.0, errors);
  std::fflush(stdout);
}

int run(const options& opt) {
  // Setup.
  std::vector<bench_user> users(opt.users);
  auto prefix = opt.user_prefix.empty() ? random_prefix() : opt.user_prefix;
  for (size_t i = 0; i < users.size(); ++i) {
    users[i].name = "bench" + prefix + "u" + std::to_string(i);
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
  std::fprintf(stderr, "smsp-bench: set up %zu %s (bench%su0..) in %.2f s\n",
               users.size(),
               opt.server == target::redis ? "list keys" : "users",
               prefix.c_str(), setup_secs);

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
  // A connection that cannot be opened is an error of the run, which goes
  // on with the others.
  error_kinds connect_errors;
  for (size_t i = 0; i < conns.size(); ++i) {
    auto& c = conns[i];
    c.index = i;
    c.user_index = i % users.size();
    c.me = &users[c.user_index];
    c.sent.resize(opt.pipeline);
    const auto& me = *c.me;
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
    // "VERB <me> <cookie>": a request on the bench user's own mailbox.
    auto on_own_mailbox = [&me](const char* verb) {
      return std::string{verb} + " " + me.name + " " + me.cookie + "\n";
    };
    if (opt.server == target::smsp)
      switch (opt.kind) {
        case workload::count:
          c.fixed_a = on_own_mailbox("COUNT");
          break;
        case workload::login:
          c.fixed_a = "LOGIN " + me.name + " " + me.password + "\n";
          break;
        case workload::message_store:
          // STORE goes to a random peer, built per request.
          break;
        case workload::mailbox:
          c.fixed_a = on_own_mailbox("STORE");
          c.fixed_b = on_own_mailbox("GETMSG");
          c.fixed_c = on_own_mailbox("DELMSG");
          break;
        case workload::mail:
          c.fixed_a = on_own_mailbox("STORE");
          c.fixed_b = on_own_mailbox("COUNT");
          c.fixed_c = on_own_mailbox("GETMSG");
          c.fixed_d = on_own_mailbox("DELMSG");
          break;
        case workload::read:
          c.fixed_a = on_own_mailbox("COUNT");
          c.fixed_b = on_own_mailbox("GETMSG");
          break;
      }
    try {
      c.fd = open_connection(*found);
    } catch (const std::exception& e) {
      c.open = false;
      auto what = "cannot open bench connection " + std::to_string(i) + " to "
                  + opt.host + ":" + service + ": " + e.what();
      connect_errors.add("connect failed", what);
      report_problem(what);
    }
  }

  // Round-robin so every thread gets the same share of connections.
  auto max_seconds = static_cast<size_t>(std::ceil(opt.duration)) + 2;
  std::vector<std::unique_ptr<worker>> workers;
  for (size_t t = 0; t < opt.threads; ++t) {
    std::vector<connection*> mine;
    for (size_t i = t; i < conns.size(); i += opt.threads)
      mine.push_back(&conns[i]);
    workers.push_back(
      std::make_unique<worker>(opt, std::move(mine), users, max_seconds));
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
  // Per worker: it has ended, so it publishes no more seconds.
  auto done = std::make_unique<std::atomic<bool>[]>(opt.threads);
  for (size_t t = 0; t < opt.threads; ++t)
    threads.emplace_back([&, t] {
      try {
        workers[t]->run(start, measure_from, stop);
      } catch (const std::exception& e) {
        failures[t] = e.what();
      }
      done[t] = true;
      ++finished;
    });
  // The main thread merges each second once every worker has published it
  // (or, for one that ended early, all it will publish): a row for --csv and
  // --plot, and on a terminal the live line. Done as the run goes, so a
  // worker's record can be emptied once merged: a day-long run keeps rows,
  // not histograms.
  bool live = ::isatty(STDOUT_FILENO) == 1;
  std::vector<second_row> rows;
  histogram merged;
  auto merge_seconds = [&](bool all_done) {
    for (auto i = rows.size();; ++i) {
      bool complete = true;
      bool any = false;
      for (size_t t = 0; t < workers.size(); ++t) {
        // Read before published(): a worker done before the read has
        // published all its seconds by then.
        bool ended = all_done || done[t];
        if (workers[t]->published() > i)
          any = true;
        else if (!ended)
          complete = false;
      }
      if (!any || !complete)
        return;
      second_row row;
      merged.clear();
      for (auto& w : workers) {
        if (w->published() <= i)
          continue;
        auto& r = w->second(i);
        row.end_s = std::max(row.end_s, r.end_s);
        row.span_s = std::max(row.span_s, r.span_s);
        row.requests += r.requests;
        row.errors += r.errors;
        for (auto [b, n] : r.buckets)
          merged.add_bucket(b, n, r.max_ns);
        w->release_second(i);
      }
      row.p50_ns = merged.quantile(0.5);
      row.p99_ns = merged.quantile(0.99);
      rows.push_back(row);
      if (live) {
        uint64_t errors = connect_errors.total();
        for (auto& w : workers)
          errors += w->errors_seen();
        print_live_line(opt, row, errors);
      }
    }
  };
  // Workers end early when all their connections dropped: don't sit out the
  // rest of the window then.
  auto wait_until = [&](time_point t) {
    while (finished < opt.threads && clock_type::now() < t) {
      std::this_thread::sleep_for(std::min<clock_type::duration>(
        t - clock_type::now(), std::chrono::milliseconds{50}));
      merge_seconds(false);
    }
  };
  if (live && opt.warmup > 0) {
    std::printf("\rwarming up for %.1f s\033[K", opt.warmup);
    std::fflush(stdout);
  }
  wait_until(measure_from);
  auto server_cpu_start = process_cpu_seconds(opt.server_pid);
  wait_until(stop);
  auto server_cpu_end = process_cpu_seconds(opt.server_pid);
  for (auto& t : threads)
    t.join();
  merge_seconds(true);
  if (live) {
    // The results replace the live line.
    std::printf("\r\033[K");
    std::fflush(stdout);
  }
  for (auto& f : failures)
    if (!f.empty())
      throw std::runtime_error(f);

  // Results.
  worker_result total;
  total.errors = connect_errors;
  double busiest = 0;
  double window = 0;
  for (auto& w : workers) {
    const auto& r = w->result();
    total.latency.merge(r.latency);
    total.requests += r.requests;
    total.errors.merge(r.errors);
    total.dropped += r.dropped;
    total.cpu_seconds += r.cpu_seconds;
    window = std::max(window, r.cpu_window);
    if (r.cpu_window > 0)
      busiest = std::max(busiest, r.cpu_seconds / r.cpu_window);
  }
  auto error_count = total.errors.total();
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
  // One JSON line, to stdout (--json) or to a file (--json FILE).
  bool json_failed = false;
  auto print_json = [&](FILE* out) {
    std::fprintf(out,
                 "{\"target\":%s,\"workload\":%s,\"cycle_requests\":%zu,"
                 "\"host\":%s,\"port\":%u,\"connections\":%zu,\"users\":%zu,"
                 "\"pipeline\":%zu,\"threads\":%zu,\"text_bytes\":%zu,"
                 "\"warmup_s\":%.3f,\"duration_s\":%.3f,\"requests\":%" PRIu64
                 ",\"requests_per_s\":%.1f,\"cycles_per_s\":%.1f,"
                 "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
                 "\"p99_9\":%.1f,\"max\":%.1f},\"error_count\":%" PRIu64
                 ",\"errors\":{",
                 json_string(opt.target_name).c_str(),
                 json_string(opt.workload_name).c_str(), cycle_length(opt),
                 json_string(opt.host).c_str(), static_cast<unsigned>(opt.port),
                 opt.connections, users.size(), opt.pipeline, opt.threads,
                 opt.text_bytes, opt.warmup, window, total.requests, rps, cps,
                 us(0.5), us(0.9), us(0.99), us(0.999), max_us, error_count);
    const char* sep = "";
    for (auto& [kind, e] : total.errors.kinds) {
      std::fprintf(out, "%s%s:%" PRIu64, sep, json_string(kind).c_str(),
                   e.count);
      sep = ",";
    }
    std::fprintf(out, "},\"error_examples\":{");
    sep = "";
    for (auto& [kind, e] : total.errors.kinds) {
      std::fprintf(out, "%s%s:%s", sep, json_string(kind).c_str(),
                   json_string(e.example).c_str());
      sep = ",";
    }
    std::fprintf(out,
                 "},\"dropped\":%" PRIu64 ",\"client_cpu_s\":%.3f,"
                 "\"client_cpu_share\":%.3f,\"client_busiest_thread\":%.3f",
                 total.dropped, total.cpu_seconds, cpu_share, busiest);
    if (server_cpu)
      std::fprintf(out, ",\"server_cpu_s\":%.3f,\"server_cpu_share\":%.3f",
                   *server_cpu, *server_cpu / window);
    std::fprintf(out, "}\n");
  };
  if (!opt.json_file.empty()) {
    auto* file = std::fopen(opt.json_file.c_str(), "w");
    if (file == nullptr) {
      std::fprintf(stderr, "smsp-bench: --json: cannot write %s: %s\n",
                   opt.json_file.c_str(), std::strerror(errno));
      json_failed = true;
    } else {
      print_json(file);
      json_failed = std::fclose(file) != 0;
      if (json_failed)
        std::fprintf(stderr, "smsp-bench: --json: cannot write %s\n",
                     opt.json_file.c_str());
    }
  }
  if (opt.json) {
    print_json(stdout);
  } else {
    std::printf("workload       %s on %s: %zu connections x pipeline %zu, "
                "%zu users, %zu thread(s), %s:%u\n",
                opt.workload_name.c_str(), opt.target_name.c_str(),
                opt.connections, opt.pipeline, users.size(), opt.threads,
                opt.host.c_str(), static_cast<unsigned>(opt.port));
    std::printf("window         %.2f s measured after %.2f s warmup\n", window,
                opt.warmup);
    std::printf("requests       %" PRIu64 "\n", total.requests);
    std::printf("throughput     %.0f req/s = %.0f cycles/s (%zu requests "
                "each)\n",
                rps, cps, cycle_length(opt));
    std::printf("latency (us)   p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max "
                "%.1f\n",
                us(0.5), us(0.9), us(0.99), us(0.999), max_us);
    std::printf("errors         %" PRIu64 "\n", error_count);
    for (auto& [kind, e] : total.errors.kinds)
      std::printf("  %-12" PRIu64 " %s (first: %s)\n", e.count, kind.c_str(),
                  e.example.c_str());
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
  int status = json_failed ? 1 : 0;
  if (!opt.csv_path.empty()
      && !write_csv(opt, rows, total.requests, total.latency, error_count)) {
    std::fprintf(stderr, "smsp-bench: --csv: cannot write %s: %s\n",
                 opt.csv_path.c_str(), std::strerror(errno));
    status = 1;
  }
  if (!opt.plot_path.empty()) {
    auto title = "smsp-bench " + opt.workload_name + " on " + opt.target_name
                 + ": " + std::to_string(opt.connections) + " connections x "
                 + std::to_string(opt.pipeline) + " in flight";
    if (auto failure = draw_plot(opt, title, rows, total.latency);
        !failure.empty()) {
      std::fprintf(stderr, "smsp-bench: --plot: %s\n", failure.c_str());
      status = 1;
    }
  }
  if (error_count > 0) {
    std::fprintf(stderr,
                 "smsp-bench: FAILED: %" PRIu64 " errors (%" PRIu64
                 " dropped connections)\n",
                 error_count, total.dropped);
    return 1;
  }
  return status;
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
    .add_option("--users", opt.users,
                "distinct bench users (default: one per connection)")
    ->check(CLI::Range(1, 1000000));
  app
    .add_option("--user-prefix", opt.user_prefix,
                "users are bench<prefix>u<i> (a-zA-Z0-9; default: random "
                "per run)")
    ->check([](const std::string& s) {
      if (s.empty() || s.size() > 20
          || !std::all_of(s.begin(), s.end(),
                          [](unsigned char c) { return std::isalnum(c); }))
        return std::string{"must be 1-20 characters of a-zA-Z0-9"};
      return std::string{};
    });
  app.add_option("--server-pid", opt.server_pid,
                 "also report this process's CPU time over the window");
  auto* json_option
    = app
        .add_option(
          "--json", opt.json_file,
          "print the result as one JSON line instead of the report; "
          "--json FILE writes that line to FILE and prints the report")
        ->expected(0, 1);
  app.add_option("--csv", opt.csv_path,
                 "write per-second rows (second,requests,cycles,p50_us,"
                 "p99_us,errors) and a total row to this file");
  app.add_option("--plot", opt.plot_path,
                 "draw throughput and latency into this PNG (needs gnuplot)");
  app
    .add_option("--timeout", opt.timeout,
                "seconds a request may wait for its reply before its "
                "connection counts as timed out")
    ->capture_default_str()
    ->check(CLI::Range(0.001, 86400.0));
  app.set_version_flag("--version", "smsp-bench " SMSP_VERSION,
                       "print the version and exit");
  // Exit codes as in smsp-actors: 0 success, 1 a failure at run time, 2 a
  // usage error.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    return app.exit(err) == 0 ? 0 : 2;
  }
  opt.json = json_option->count() > 0 && opt.json_file.empty();
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
  if (opt.users == 0)
    opt.users = opt.connections;
  if (opt.users > opt.connections && opt.kind != workload::message_store) {
    std::fprintf(stderr, "smsp-bench: --users above --connections only for "
                         "--mix store (the extra users receive its STOREs)\n");
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smsp-bench: %s\n", e.what());
    return 1;
  }
}
