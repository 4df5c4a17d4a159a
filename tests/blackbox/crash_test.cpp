// Black-box crash test: load the built server, kill -9 it, restart, check.
//
// Usage: crash_test SERVER_BIN [ROUNDS] [CLIENTS] [--nodes N [--node-rounds K]]
//
// Each client thread owns a poster and a sink account and runs one request
// at a time (MESSAGE, STORE into its sink, GETMSG and DELMSG on the sink,
// REGISTER of new accounts), keeping a model of what the server
// acknowledged. Once the clients together have had a random number of
// replies (so the kill lands in the load whatever the machine's speed), the
// server gets SIGKILL amid the requests under way. After a restart on the
// same data dir every client checks, through the protocol only, that
// the server holds exactly its acknowledged state, or that state with its
// one unacknowledged request applied; then the next round starts.
//
// With --nodes N (cluster mode) the test starts N mailbox nodes
// (smsp-actors node), kept running across rounds, and the server as a front
// over them (--mailbox-node for each). Every client then owns one sink per
// node (placed there by the front's own rendezvous hashing) and its poster
// (on node i mod N), and STOREs into any of them, itself included: each
// STORE is a move from the front's IMQ to a mailbox in another process.
// ROUNDS rounds kill -9 the front, at a moment when a STORE is under way if
// one comes within 2 s of the trigger, restart it with the same node list
// and check as above. K more rounds (default: two per node, interleaved
// with the others) kill -9 one node the same way, restart it on its port while
// the front keeps running, go on with the load a little, stop it, check
// through the running front, then kill -9 and restart the front and check
// again. There a request for a mailbox on the dead node may answer
// 'KO mailbox unavailable' (the client then stops for the round): the
// message of such a STORE may be on the IMQ, in the mailbox, or (for the
// moment) nowhere, since the outcome was not acknowledged; it must never be
// found twice, and a message found nowhere may turn up once later, when the
// front completes the move. Acknowledged messages must always be found
// exactly once, where the model says.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/logic/placement.hpp"
#include "app/line_client.hpp"

namespace {

using smsp::line_client;
using namespace std::chrono_literals;
using texts = std::vector<std::string>;

constexpr const char* unavailable = "KO mailbox unavailable";

std::mutex report_mutex;
std::atomic<int> failures{0};
/// Failures that end the run after the current round (all but the known
/// hang below).
std::atomic<int> stopping_failures{0};

/// A STORE from a poster with nothing on the IMQ got no 'KO nothing to
/// store' at the start, but no reply or (after the server's deadline)
/// 'KO internal error': a server bug, reported once as a failure. The load
/// then never sends one, and the check sends one only where the IMQ should
/// be empty and takes 'KO internal error' (or no reply within 30 s) for
/// 'KO nothing to store', so that the rounds still check everything else.
std::atomic<bool> empty_store_hangs{false};

/// Replies the clients have had in the current round, and clients still
/// driving it.
std::atomic<long> replies_in_round{0};
std::atomic<int> drivers_running{0};

/// Cluster mode: mailboxes live on nodes, 'KO mailbox unavailable' is a
/// possible answer.
bool cluster = false;
/// A node round: the front is not killed, so clients stop on this flag and
/// a lost connection is an error.
std::atomic<bool> front_stays{false};
std::atomic<bool> stop_round{false};
/// STOREs under way into mailboxes of each node.
constexpr int max_nodes = 8;
std::atomic<int> stores_to_node[max_nodes];

void fail(const std::string& what) {
  std::lock_guard<std::mutex> guard{report_mutex};
  std::cerr << "FAIL: " << what << "\n";
  ++failures;
  ++stopping_failures;
}

/// A failure after which the rounds go on (see empty_store_hangs).
void fail_and_go_on(const std::string& what) {
  std::lock_guard<std::mutex> guard{report_mutex};
  std::cerr << "FAIL: " << what << "\n";
  ++failures;
}

void note(const std::string& what) {
  std::lock_guard<std::mutex> guard{report_mutex};
  std::cout << what << std::endl;
}

std::string now_text() {
  auto now = std::chrono::system_clock::now();
  auto t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              now.time_since_epoch())
              .count()
            % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

/// Appends a marker line to a process's log, so that its log shows where
/// the test started, killed and checked it.
void mark(const std::string& log_path, const std::string& what) {
  if (log_path.empty())
    return;
  std::ofstream out{log_path, std::ios::app};
  out << now_text() << " === crash_test: " << what << " ===\n";
}

std::string file_from(const std::string& path, size_t offset) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The child could not listen on its (fixed) port.
struct port_in_use : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A server or node as a child process: started with `args`, stderr into
/// `log_path` (appended) unless empty; ready once it prints "... listening
/// on HOST:PORT" on stdout.
struct child_process {
  pid_t pid = -1;
  uint16_t port = 0;

  child_process(const std::vector<std::string>& args,
                const std::string& log_path) {
    size_t log_offset = 0;
    if (!log_path.empty()) {
      std::error_code ec;
      auto size = std::filesystem::file_size(log_path, ec);
      if (!ec)
        log_offset = size;
    }
    // Built before fork(): the child of a threaded process only execs.
    std::vector<char*> argv;
    for (auto& arg : args)
      argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    int out[2];
    if (::pipe(out) != 0)
      throw std::runtime_error("pipe failed");
    pid = ::fork();
    if (pid < 0)
      throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      if (!log_path.empty()) {
        int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
          ::dup2(fd, STDERR_FILENO);
          ::close(fd);
        }
      }
      ::execv(argv[0], argv.data());
      std::perror("exec");
      ::_exit(127);
    }
    ::close(out[1]);
    // "smsp-actors listening on 127.0.0.1:PORT" or
    // "smsp-actors node listening on 127.0.0.1:PORT". A node that cannot
    // listen says so on stderr (and may not exit): the log tells.
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    for (;;) {
      pollfd p{out[0], POLLIN, 0};
      auto ready = ::poll(&p, 1, 100);
      if (ready > 0) {
        char c;
        auto n = ::read(out[0], &c, 1);
        if (n == 1 && c == '\n')
          break;
        if (n == 1) {
          line.push_back(c);
          continue;
        }
        if (n < 0 && errno == EINTR)
          continue;
        break; // EOF: the child is gone
      }
      if (ready < 0 && errno == EINTR)
        continue;
      if (!log_path.empty()
          && file_from(log_path, log_offset).find("cannot listen")
               != std::string::npos) {
        ::close(out[0]);
        kill_hard();
        throw port_in_use(
          args[0] + " could not listen: " + file_from(log_path, log_offset));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        line += " (nothing more within 60 s)";
        break;
      }
    }
    ::close(out[0]);
    auto colon = line.rfind(':');
    if (line.find("listening on") == std::string::npos
        || colon == std::string::npos) {
      kill_hard();
      throw std::runtime_error(
        "server did not start: '" + line + "'"
        + (log_path.empty() ? std::string{}
                            : "; its log: " + file_from(log_path, log_offset)));
    }
    port = static_cast<uint16_t>(std::stoi(line.substr(colon + 1)));
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// Whether the process has exited by itself (reaped then).
  bool exited() {
    if (pid <= 0)
      return true;
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return true;
    }
    return false;
  }

  void kill_hard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }

  ~child_process() {
    kill_hard();
  }
};

/// The single-process server.
std::unique_ptr<child_process> start_server(const std::string& bin,
                                            const std::string& data_dir) {
  return std::make_unique<child_process>(
    std::vector<std::string>{bin, "--port", "0", "--data-dir", data_dir,
                             "--pwhash", "min", "--hash-workers", "1"},
    std::string{});
}

std::optional<std::string> cookie_of(const std::string& reply) {
  if (reply.rfind("OK ", 0) != 0 || reply.size() != 35)
    return std::nullopt;
  return reply.substr(3);
}

/// What one client knows the server acknowledged.
struct client_model {
  std::string poster;
  /// The mailboxes it STOREs into and reads: one sink, or in cluster mode one
  /// sink per node and the poster itself. users[0] is never the poster.
  std::vector<std::string> users;
  /// Node of each of users (cluster mode), else -1.
  std::vector<int> node_of;
  /// The mailbox of each of users, oldest first.
  std::vector<std::deque<std::string>> boxes;
  /// Posted and not stored, oldest first.
  std::deque<std::string> unstored;
  /// Accounts registered (acknowledged) besides poster and sinks.
  std::vector<std::string> accounts;
  /// The request the crash cut off, if any, e.g. "MESSAGE text".
  std::string in_flight;
  std::string in_flight_arg;
  /// The index in users of the in-flight STORE's or DELMSG's mailbox.
  size_t in_flight_user = 0;
  /// The in-flight request was answered 'KO mailbox unavailable'.
  bool in_flight_unavailable = false;
  /// Texts of STOREs answered 'KO mailbox unavailable' and found nowhere
  /// since: each may turn up once, and how it was cut off.
  std::map<std::string, std::string> may_reappear;
  /// Why the load stopped in a round where the front stays up, if not by
  /// stop_round.
  std::string driver_error;
  /// 'KO mailbox unavailable' answers this round.
  long unavailable_replies = 0;
  int next_text = 0;

  /// poster first, then the other users.
  std::vector<std::string> names() const {
    std::vector<std::string> out{poster};
    for (auto& user : users)
      if (user != poster)
        out.push_back(user);
    return out;
  }

  std::string cut_off() const {
    if (in_flight.empty())
      return "-";
    auto out = in_flight;
    if (in_flight == "STORE" || in_flight == "DELMSG")
      out += " " + users[in_flight_user];
    if (in_flight_unavailable)
      out += " (answered: KO mailbox unavailable)";
    return out;
  }
};

enum class op { message, store, getmsg, delmsg, enroll };

/// Counts a STORE into a node's mailbox while it is under way.
struct store_under_way {
  int node;
  explicit store_under_way(int n) : node(n) {
    if (node >= 0)
      ++stores_to_node[node];
  }
  ~store_under_way() {
    if (node >= 0)
      --stores_to_node[node];
  }
};

/// Runs requests until the server dies (or, when the front stays,
/// stop_round). Every reply is checked against the model as well.
void drive_until_killed(uint16_t port, client_model& m, int round,
                        unsigned seed);

/// Runs requests until the server dies (see drive_until_killed); counted in
/// drivers_running.
void drive(uint16_t port, client_model& m, int round, unsigned seed) {
  drive_until_killed(port, m, round, seed);
  --drivers_running;
}

void drive_until_killed(uint16_t port, client_model& m, int round,
                        unsigned seed) {
  std::mt19937 rng{seed};
  // One connection and session per account.
  std::map<std::string, std::unique_ptr<line_client>> conn;
  std::map<std::string, std::string> cookie;
  try {
    for (auto& name : m.names())
      conn[name] = std::make_unique<line_client>("127.0.0.1", port);
    for (auto& name : m.names()) {
      auto c = cookie_of(conn[name]->call("LOGIN " + name + " pw"));
      if (!c) {
        fail(name + ": LOGIN refused at the start of round "
             + std::to_string(round));
        return;
      }
      cookie[name] = *c;
    }
  } catch (const std::exception& err) {
    if (front_stays)
      m.driver_error = std::string{"at LOGIN: "} + err.what();
    return; // killed before the load began
  }
  auto& poster_conn = *conn[m.poster];
  auto& poster_cookie = cookie[m.poster];
  for (;;) {
    if (stop_round)
      return;
    auto pick = std::uniform_int_distribution<int>{0, 99}(rng);
    op next = pick < 40   ? op::message
              : pick < 70 ? op::store
              : pick < 80 ? op::getmsg
              : pick < 95 ? op::delmsg
                          : op::enroll;
    size_t u = 0;
    if (m.users.size() > 1)
      u = std::uniform_int_distribution<size_t>{0, m.users.size() - 1}(rng);
    auto& user = m.users[u];
    auto& box = m.boxes[u];
    std::string reply;
    try {
      switch (next) {
        case op::message: {
          auto text = "r" + std::to_string(round) + " " + m.poster + " #"
                      + std::to_string(m.next_text++);
          m.in_flight = "MESSAGE";
          m.in_flight_arg = text;
          reply = poster_conn.call("MESSAGE " + text + " " + poster_cookie);
          if (reply != "OK")
            fail(m.poster + ": MESSAGE got '" + reply + "'");
          else
            m.unstored.push_back(text);
          break;
        }
        case op::store: {
          if (empty_store_hangs && m.unstored.empty())
            continue; // would get no reply (see empty_store_hangs)
          m.in_flight = "STORE";
          m.in_flight_user = u;
          {
            store_under_way counted{m.node_of[u]};
            reply = poster_conn.call("STORE " + user + " " + poster_cookie);
          }
          if (cluster && reply == unavailable) {
            ++m.unavailable_replies;
            if (m.unstored.empty())
              break; // nothing it could have moved
            // Where the message is now is not known: stop for this round,
            // the check finds out.
            m.in_flight_unavailable = true;
            return;
          }
          if (m.unstored.empty()) {
            if (reply != "KO nothing to store")
              fail(m.poster + ": STORE with nothing posted got '" + reply
                   + "'");
          } else if (reply != "OK") {
            fail(m.poster + ": STORE " + user + " got '" + reply + "'");
          } else {
            box.push_back(m.unstored.back());
            m.unstored.pop_back();
          }
          break;
        }
        case op::getmsg: {
          m.in_flight = "GETMSG";
          reply = conn[user]->call("GETMSG " + user + " " + cookie[user]);
          if (cluster && reply == unavailable) {
            ++m.unavailable_replies;
            std::this_thread::sleep_for(2ms);
            break;
          }
          auto expected = box.empty() ? std::string{"KO mailbox empty"}
                                      : "OK " + box.front();
          if (reply != expected)
            fail(user + ": GETMSG got '" + reply + "', expected '" + expected
                 + "'");
          break;
        }
        case op::delmsg: {
          m.in_flight = "DELMSG";
          m.in_flight_user = u;
          reply = conn[user]->call("DELMSG " + user + " " + cookie[user]);
          if (cluster && reply == unavailable) {
            ++m.unavailable_replies;
            m.in_flight_unavailable = true;
            return; // deleted or not: the check finds out
          }
          if (box.empty()) {
            if (reply != "KO mailbox empty")
              fail(user + ": DELMSG on empty got '" + reply + "'");
          } else if (reply != "OK") {
            fail(user + ": DELMSG got '" + reply + "'");
          } else {
            box.pop_front();
          }
          break;
        }
        case op::enroll: {
          auto name = m.poster + "r" + std::to_string(round) + "n"
                      + std::to_string(m.accounts.size());
          m.in_flight = "REGISTER";
          m.in_flight_arg = name;
          reply = poster_conn.call("REGISTER " + name + " pw");
          if (cluster && reply == unavailable) {
            ++m.unavailable_replies;
            m.in_flight_unavailable = true;
            return; // registered or not: the check finds out
          }
          if (!cookie_of(reply))
            fail(name + ": REGISTER got '" + reply + "'");
          else
            m.accounts.push_back(name);
          // REGISTER started a session for the new account; the poster's
          // own session goes on (one session per user, not per connection).
          break;
        }
      }
      m.in_flight.clear();
      ++replies_in_round;
    } catch (const std::exception& err) {
      if (front_stays)
        m.driver_error = m.in_flight + " " + user + ": " + err.what();
      return; // the server is gone: m.in_flight is the cut-off request
    }
  }
}

/// conn.call(request), its errors naming the request (up to the cookie).
std::string call(line_client& conn, const std::string& request) {
  try {
    return conn.call(request);
  } catch (const std::exception& err) {
    auto shown = request;
    if (auto space = shown.rfind(' ');
        space != std::string::npos && shown.size() - space == 33)
      shown.resize(space);
    throw std::runtime_error("'" + shown + "' at " + now_text() + ": "
                             + err.what());
  }
}

/// Reads a whole mailbox oldest first, emptying it.
std::vector<std::string> drain(line_client& conn, const std::string& user,
                               const std::string& cookie) {
  std::vector<std::string> texts;
  for (;;) {
    auto reply = call(conn, "GETMSG " + user + " " + cookie);
    if (reply == "KO mailbox empty")
      break;
    if (reply.rfind("OK ", 0) != 0)
      throw std::runtime_error("GETMSG " + user + " got '" + reply + "'");
    texts.push_back(reply.substr(3));
    auto del = call(conn, "DELMSG " + user + " " + cookie);
    if (del != "OK")
      throw std::runtime_error("DELMSG " + user + " got '" + del + "'");
  }
  return texts;
}

std::string show(const std::vector<std::string>& texts) {
  std::string out = "[";
  for (auto& text : texts)
    out += (out.size() > 1 ? "|" : "") + text;
  return out + "]";
}

/// A server state as the check sees it: each of users' mailbox, the
/// poster's IMQ most recent first.
struct state {
  std::vector<texts> boxes;
  texts imq;
  /// The text of a KO'd STORE this state has found nowhere, if any.
  std::string missing;
};

std::string show(const client_model& m, const state& s) {
  std::string out;
  for (size_t u = 0; u < m.users.size(); ++u)
    out += "mailbox " + m.users[u] + " " + show(s.boxes[u]) + ", ";
  return out + "imq " + show(s.imq);
}

/// Where each text is in `found`, for texts of `acked` and texts found that
/// are not in it: "lost", "twice" and "unexpected" lines.
std::string explain(const client_model& m, const state& acked,
                    const state& found) {
  std::map<std::string, std::vector<std::string>> where_found, where_acked;
  auto index = [&](const state& s, auto& where) {
    for (size_t u = 0; u < m.users.size(); ++u)
      for (auto& t : s.boxes[u])
        where[t].push_back("mailbox " + m.users[u]);
    for (auto& t : s.imq)
      where[t].push_back("imq");
  };
  index(found, where_found);
  index(acked, where_acked);
  std::string out;
  auto places = [](const std::vector<std::string>& v) {
    std::string s;
    for (auto& p : v)
      s += (s.empty() ? "" : " and ") + p;
    return s;
  };
  for (auto& [text, places_acked] : where_acked) {
    auto it = where_found.find(text);
    if (it == where_found.end())
      out += "\n    '" + text + "' acknowledged in " + places(places_acked)
             + ": found nowhere";
    else if (it->second.size() > 1)
      out += "\n    '" + text + "' acknowledged in " + places(places_acked)
             + ": found " + std::to_string(it->second.size()) + " times, in "
             + places(it->second);
    else if (it->second != places_acked)
      out += "\n    '" + text + "' acknowledged in " + places(places_acked)
             + ": found in " + places(it->second);
  }
  for (auto& [text, places_found] : where_found)
    if (where_acked.count(text) == 0)
      out += "\n    '" + text + "' not acknowledged anywhere: found in "
             + places(places_found);
  return out;
}

/// Checks the restarted (or still running) server against the model, then
/// resets the model to the (now empty) server state. `when` names the
/// check in reports.
void verify_state(uint16_t port, client_model& m, const std::string& when) {
  line_client conn{"127.0.0.1", port};
  for (auto& name : m.accounts)
    if (!cookie_of(call(conn, "LOGIN " + name + " pw")))
      fail(when + ": acknowledged REGISTER of " + name + " lost");
  if (m.in_flight == "REGISTER") {
    // Either outcome is allowed; a wrong password must fail either way.
    auto reply = call(conn, "LOGIN " + m.in_flight_arg + " wrong");
    if (cookie_of(reply))
      fail(m.in_flight_arg + ": wrong password accepted");
    else if (cookie_of(call(conn, "LOGIN " + m.in_flight_arg + " pw")))
      m.accounts.push_back(m.in_flight_arg);
  }
  std::map<std::string, std::string> cookie;
  for (auto& name : m.names()) {
    auto c = cookie_of(call(conn, "LOGIN " + name + " pw"));
    if (!c) {
      fail(when + ": " + m.poster + ": account " + name + " lost");
      return;
    }
    cookie[name] = *c;
  }
  if (cluster) {
    // A restarted node or front may take a moment to link up; COUNT only
    // reads. Bounded as a hang detector.
    for (auto& user : m.users) {
      auto give_up = std::chrono::steady_clock::now() + 60s;
      for (;;) {
        auto reply = call(conn, "COUNT " + user + " " + cookie[user]);
        if (reply.rfind("COUNTED ", 0) == 0)
          break;
        if (reply != unavailable)
          throw std::runtime_error(when + ": COUNT " + user + " got '" + reply
                                   + "'");
        if (std::chrono::steady_clock::now() > give_up)
          throw std::runtime_error(when + ": mailbox of " + user
                                   + " still unavailable after 60 s");
        std::this_thread::sleep_for(50ms);
      }
    }
  }
  state found;
  for (auto& user : m.users)
    found.boxes.push_back(drain(conn, user, cookie[user]));
  // The IMQ, most recent first: STORE each into the (empty) first sink, read
  // it.
  auto& sink = m.users[0];
  // With empty_store_hangs: the entries the IMQ must have, surely.
  auto surely = m.unstored.size();
  if (surely > 0 && m.in_flight == "STORE")
    --surely;
  for (;;) {
    auto request = "STORE " + sink + " " + cookie[m.poster];
    std::string reply;
    if (empty_store_hangs && found.imq.size() >= surely) {
      try {
        line_client probe{"127.0.0.1", port, 30s};
        reply = probe.call(request);
      } catch (const std::exception&) {
        reply = "KO internal error";
      }
      if (reply == "KO internal error")
        reply = "KO nothing to store"; // as far as can be told
    } else {
      reply = call(conn, request);
    }
    if (reply == "KO nothing to store")
      break;
    if (reply != "OK")
      throw std::runtime_error(when + ": STORE " + sink + " got '" + reply
                               + "'");
    auto one = drain(conn, sink, cookie[sink]);
    if (one.size() != 1)
      throw std::runtime_error(when + ": one STORE delivered " + show(one));
    found.imq.push_back(one.front());
  }
  // Texts of earlier KO'd STOREs may turn up, once.
  std::string reappeared;
  auto strip = [&](texts& list, const std::string& where) {
    for (auto it = list.begin(); it != list.end();) {
      auto known = m.may_reappear.find(*it);
      if (known == m.may_reappear.end()) {
        ++it;
        continue;
      }
      reappeared += " '" + *it + "' (" + known->second + ") in " + where + ";";
      m.may_reappear.erase(known);
      it = list.erase(it);
    }
  };
  for (size_t u = 0; u < m.users.size(); ++u)
    strip(found.boxes[u], "mailbox " + m.users[u]);
  strip(found.imq, "imq");
  if (!reappeared.empty())
    note("  " + when + ": " + m.poster
         + ": earlier KO'd STORE(s) turned up:" + reappeared);
  state base;
  for (auto& box : m.boxes)
    base.boxes.emplace_back(box.begin(), box.end());
  base.imq.assign(m.unstored.rbegin(), m.unstored.rend());
  std::vector<state> allowed{base};
  if (m.in_flight == "MESSAGE") {
    auto with_post = base;
    with_post.imq.insert(with_post.imq.begin(), m.in_flight_arg);
    allowed.push_back(with_post);
  } else if (m.in_flight == "STORE" && !base.imq.empty()) {
    auto stored = base;
    stored.boxes[m.in_flight_user].push_back(base.imq.front());
    stored.imq.erase(stored.imq.begin());
    allowed.push_back(stored);
    if (m.in_flight_unavailable) {
      // Not acknowledged: may be nowhere for now (a move left to finish).
      auto missing = base;
      missing.imq.erase(missing.imq.begin());
      missing.missing = base.imq.front();
      allowed.push_back(missing);
    }
  } else if (m.in_flight == "DELMSG" && !base.boxes[m.in_flight_user].empty()) {
    auto deleted = base;
    auto& box = deleted.boxes[m.in_flight_user];
    box.erase(box.begin());
    allowed.push_back(deleted);
  }
  const state* match = nullptr;
  for (auto& s : allowed)
    if (s.boxes == found.boxes && s.imq == found.imq)
      match = &s;
  if (match == nullptr)
    fail(when + ": " + m.poster + " (cut off: " + m.cut_off() + "): server has "
         + show(m, found) + "; acknowledged " + show(m, base)
         + explain(m, base, found));
  else if (m.in_flight_unavailable && m.in_flight == "STORE"
           && match->missing.empty())
    note("  " + when + ": " + m.poster + ": the KO'd STORE into "
         + m.users[m.in_flight_user] + ": its message is "
         + (match == &allowed.front() ? "on the IMQ" : "in the mailbox"));
  else if (!match->missing.empty()) {
    m.may_reappear[match->missing] = when + ", " + m.cut_off();
    note("  " + when + ": " + m.poster + ": '" + match->missing
         + "' of the KO'd STORE into " + m.users[m.in_flight_user]
         + " is neither on the IMQ nor in a mailbox (allowed, not "
           "acknowledged)");
  }
  for (auto& box : m.boxes)
    box.clear();
  m.unstored.clear();
  m.in_flight.clear();
  m.in_flight_unavailable = false;
}

void verify(uint16_t port, client_model& m, const std::string& when) {
  try {
    verify_state(port, m, when);
  } catch (const std::exception& err) {
    state acked;
    for (auto& box : m.boxes)
      acked.boxes.emplace_back(box.begin(), box.end());
    acked.imq.assign(m.unstored.rbegin(), m.unstored.rend());
    throw std::runtime_error(when + ": checking " + m.poster
                             + " (cut off: " + m.cut_off() + "): " + err.what()
                             + "; acknowledged " + show(m, acked));
  }
}

/// Checks every model at once (see verify); an error fails its client's
/// check.
void verify_all(uint16_t port, std::vector<client_model>& models,
                const std::string& when) {
  std::vector<std::thread> threads;
  for (auto& m : models)
    threads.emplace_back([&] {
      try {
        verify(port, m, when);
      } catch (const std::exception& err) {
        fail(err.what());
      }
    });
  for (auto& t : threads)
    t.join();
}

/// Sends a STORE from m's poster, who has nothing on the IMQ; sets
/// empty_store_hangs if it gets no reply.
void probe_empty_store(uint16_t port, const client_model& m) {
  line_client conn{"127.0.0.1", port};
  auto c = cookie_of(conn.call("LOGIN " + m.poster + " pw"));
  if (!c)
    throw std::runtime_error("LOGIN " + m.poster + " refused");
  std::string reply;
  auto sent = std::chrono::steady_clock::now();
  try {
    reply = conn.call("STORE " + m.users[0] + " " + *c);
  } catch (const std::exception& err) {
    reply = std::string{"no reply: "} + err.what();
  }
  if (reply == "KO nothing to store")
    return;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - sent)
              .count();
  if (reply != "KO internal error" && reply.rfind("no reply", 0) != 0) {
    fail("STORE " + m.users[0] + " from " + m.poster
         + ", who has nothing on the IMQ, got '" + reply + "'");
    return;
  }
  empty_store_hangs = true;
  fail_and_go_on(
    "STORE " + m.users[0] + " from " + m.poster
    + ", who has nothing on the IMQ, got '" + reply + "' after "
    + std::to_string(ms)
    + " ms, not 'KO nothing to store'; from now on the load sends no such "
      "STORE and the check takes 'KO internal error' for 'KO nothing to "
      "store'");
}

/// Waits until the replies of the round reach `target`, the drivers all
/// stop, or 120 s pass (a hang detector). Returns the replies.
long await_replies(long target) {
  auto give_up = std::chrono::steady_clock::now() + 120s;
  while (replies_in_round < target && drivers_running > 0
         && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(1ms);
  return replies_in_round.load();
}

/// Waits (at most 2 s) for a STORE into a mailbox of `node` (any node if
/// -1) to be under way. Returns whether one was.
bool await_store(int node, int nodes) {
  auto give_up = std::chrono::steady_clock::now() + 2s;
  for (;;) {
    for (int k = 0; k < nodes; ++k)
      if ((node < 0 || node == k) && stores_to_node[k] > 0)
        return true;
    if (drivers_running == 0 || std::chrono::steady_clock::now() > give_up)
      return false;
    std::this_thread::sleep_for(100us);
  }
}

int run_single(const std::string& bin, int rounds, int clients,
               std::mt19937& rng) {
  auto data_dir = (std::filesystem::temp_directory_path()
                   / ("smsp-crash-test-" + std::to_string(::getpid())))
                    .string();
  std::filesystem::remove_all(data_dir);
  std::vector<client_model> models(clients);
  try {
    {
      auto srv = start_server(bin, data_dir);
      line_client conn{"127.0.0.1", srv->port};
      for (int i = 0; i < clients; ++i) {
        auto& m = models[i];
        m.poster = "poster" + std::to_string(i);
        m.users = {"sink" + std::to_string(i)};
        m.node_of = {-1};
        m.boxes.resize(1);
        for (auto& name : m.names())
          if (!cookie_of(conn.call("REGISTER " + name + " pw")))
            throw std::runtime_error("REGISTER " + name + " failed");
      }
      probe_empty_store(srv->port, models[0]);
      srv->kill_hard();
    }
    size_t acknowledged = 0;
    for (int round = 1; round <= rounds && stopping_failures == 0; ++round) {
      auto srv = start_server(bin, data_dir);
      replies_in_round = 0;
      drivers_running = clients;
      std::vector<std::thread> threads;
      for (int i = 0; i < clients; ++i)
        threads.emplace_back(drive, srv->port, std::ref(models[i]), round,
                             static_cast<unsigned>(rng()));
      // Killed after a number of replies, not of milliseconds: on a slow
      // machine as on a fast one the round cuts into its load. The bound in
      // time is a hang detector; clients that stop early have failed.
      auto target = std::uniform_int_distribution<long>{20, 600}(rng);
      auto replies = await_replies(target);
      srv->kill_hard();
      if (replies < target)
        fail("round " + std::to_string(round) + ": " + std::to_string(replies)
             + " replies before the kill, " + std::to_string(target)
             + " wanted (" + std::to_string(drivers_running.load())
             + " client(s) still running)");
      for (auto& t : threads)
        t.join();
      std::string cut;
      for (auto& m : models) {
        acknowledged += m.boxes[0].size() + m.unstored.size();
        cut += " " + (m.in_flight.empty() ? "-" : m.in_flight);
      }
      auto again = start_server(bin, data_dir);
      verify_all(again->port, models, "round " + std::to_string(round));
      note("round " + std::to_string(round) + ": killed after "
           + std::to_string(replies) + " replies; cut off:" + cut + "; "
           + (stopping_failures == 0 ? "state matches" : "MISMATCH"));
      again->kill_hard();
    }
    note("crash_test: " + std::to_string(acknowledged)
         + " acknowledged messages checked");
  } catch (const std::exception& err) {
    fail(err.what());
  }
  std::filesystem::remove_all(data_dir);
  return failures == 0 ? 0 : 1;
}

// -- cluster mode -------------------------------------------------------------

/// A port that was free a moment ago (a node needs a fixed one: the front
/// records the node list).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct cluster_setup {
  std::string bin;
  std::string root;
  std::vector<uint16_t> node_ports;
  std::vector<std::unique_ptr<child_process>> nodes;
  std::unique_ptr<child_process> front;
  int front_starts = 0;

  std::string node_dir(int k) const {
    return root + "/node" + std::to_string(k);
  }
  std::string node_log(int k) const {
    return root + "/logs/node" + std::to_string(k) + ".log";
  }
  std::string front_log() const {
    return root + "/logs/front.log";
  }

  /// Starts node k on its port (a new free one if it has none yet);
  /// retries while the port is taken, e.g. by connections of the killed
  /// node.
  void start_node(int k, const std::string& why) {
    bool fixed = node_ports[k] != 0;
    for (int attempt = 1;; ++attempt) {
      if (!fixed)
        node_ports[k] = free_port();
      mark(node_log(k), "start node " + std::to_string(k) + " on port "
                          + std::to_string(node_ports[k]) + " (" + why + ")");
      try {
        nodes[k] = std::make_unique<child_process>(
          std::vector<std::string>{
            bin, "node", "--port", std::to_string(node_ports[k]), "--data-dir",
            node_dir(k), "--node-timeout", node_timeout()},
          node_log(k));
        return;
      } catch (const port_in_use&) {
        if (attempt >= 100)
          throw;
        std::this_thread::sleep_for(fixed ? 200ms : 10ms);
      }
    }
  }

  void kill_node(int k, const std::string& why) {
    mark(node_log(k), "kill -9 node " + std::to_string(k) + " (" + why + ")");
    nodes[k]->kill_hard();
  }

  /// --node-timeout of the front and the nodes, in seconds: the default
  /// (1), times SMSP_TEST_TIME_FACTOR (tests/sanitize.sh sets it), so that a
  /// sanitized build on a busy machine is not taken for a dead node (this
  /// test checks what a failure leaves, not how fast it is noticed).
  static std::string node_timeout() {
    auto factor = std::getenv("SMSP_TEST_TIME_FACTOR");
    auto n = factor ? std::atoi(factor) : 1;
    return std::to_string(n > 0 ? n : 1);
  }

  std::vector<smsp::node_address> addresses() const {
    std::vector<smsp::node_address> out;
    for (auto port : node_ports)
      out.push_back(smsp::node_address{"127.0.0.1", port});
    return out;
  }

  void start_front(const std::string& why) {
    std::vector<std::string> args{bin,          "--port",         "0",
                                  "--data-dir", root + "/front",  "--pwhash",
                                  "min",        "--hash-workers", "1"};
    for (auto& a : addresses()) {
      args.push_back("--mailbox-node");
      args.push_back(smsp::to_string(a));
    }
    args.push_back("--node-timeout");
    args.push_back(node_timeout());
    ++front_starts;
    mark(front_log(),
         "start front #" + std::to_string(front_starts) + " (" + why + ")");
    front = std::make_unique<child_process>(args, front_log());
  }

  void kill_front(const std::string& why) {
    mark(front_log(),
         "kill -9 front #" + std::to_string(front_starts) + " (" + why + ")");
    front->kill_hard();
    // The front's data as the kill left it (and the nodes' at that moment,
    // maybe torn by their writes): evidence for a failure, deleted with the
    // rest on success.
    auto to = root + "/after-kill-" + std::to_string(front_starts);
    std::error_code ec;
    std::filesystem::create_directories(to, ec);
    std::filesystem::copy(root + "/front", to + "/front",
                          std::filesystem::copy_options::recursive, ec);
    for (size_t k = 0; k < nodes.size(); ++k)
      std::filesystem::copy(node_dir(static_cast<int>(k)),
                            to + "/node" + std::to_string(k),
                            std::filesystem::copy_options::recursive, ec);
  }
};

/// `base` or `base` with a suffix that the front places on node `node`.
std::string name_on(const std::string& base, int node,
                    const std::vector<smsp::node_address>& nodes) {
  for (int i = 0;; ++i) {
    auto name = i == 0 ? base : base + "x" + std::to_string(i);
    if (static_cast<int>(smsp::rendezvous_place(name, nodes)) == node)
      return name;
  }
}

int run_cluster(const std::string& bin, int rounds, int node_rounds,
                int clients, int nodes, std::mt19937& rng) {
  cluster = true;
  cluster_setup c;
  c.bin = bin;
  c.root = (std::filesystem::temp_directory_path()
            / ("smsp-crash-test-" + std::to_string(::getpid())))
             .string();
  std::filesystem::remove_all(c.root);
  std::filesystem::create_directories(c.root + "/logs");
  c.node_ports.assign(nodes, 0);
  c.nodes.resize(nodes);
  std::vector<client_model> models(clients);
  // F = kill the front; a number k = kill node k. Node rounds come after the
  // first front rounds, one each, so that fronts restart after them too.
  std::vector<int> schedule;
  for (int r = 1; r <= rounds; ++r) {
    schedule.push_back(-1);
    if (r <= node_rounds)
      schedule.push_back((r - 1) % nodes);
  }
  for (int r = rounds + 1; r <= node_rounds; ++r)
    schedule.push_back((r - 1) % nodes);
  size_t acknowledged = 0;
  long unavailable_total = 0;
  try {
    for (int k = 0; k < nodes; ++k)
      c.start_node(k, "first start");
    auto addresses = c.addresses();
    std::string placement;
    for (int i = 0; i < clients; ++i) {
      auto& m = models[i];
      auto id = std::to_string(i);
      m.poster = name_on("poster" + id, i % nodes, addresses);
      for (int k = 0; k < nodes; ++k) {
        m.users.push_back(
          name_on("sink" + id + "n" + std::to_string(k), k, addresses));
        m.node_of.push_back(k);
      }
      m.users.push_back(m.poster);
      m.node_of.push_back(i % nodes);
      m.boxes.resize(m.users.size());
      for (size_t u = 0; u < m.users.size(); ++u)
        placement += " " + m.users[u] + "@node" + std::to_string(m.node_of[u]);
    }
    note("nodes on ports" +
         [&] {
           std::string s;
           for (auto p : c.node_ports)
             s += " " + std::to_string(p);
           return s;
         }()
         + "; mailboxes:" + placement);
    c.start_front("first start");
    {
      line_client conn{"127.0.0.1", c.front->port};
      for (auto& m : models)
        for (auto& name : m.names())
          if (!cookie_of(conn.call("REGISTER " + name + " pw")))
            throw std::runtime_error("REGISTER " + name + " failed");
    }
    probe_empty_store(c.front->port, models[0]);
    for (size_t r = 0; r < schedule.size() && stopping_failures == 0; ++r) {
      int round = static_cast<int>(r) + 1;
      int victim = schedule[r]; // -1: the front
      auto name = "round " + std::to_string(round);
      front_stays = victim >= 0;
      stop_round = false;
      replies_in_round = 0;
      drivers_running = clients;
      for (auto& m : models) {
        m.driver_error.clear();
        m.unavailable_replies = 0;
      }
      auto port = c.front->port;
      std::vector<std::thread> threads;
      for (int i = 0; i < clients; ++i)
        threads.emplace_back(drive, port, std::ref(models[i]), round,
                             static_cast<unsigned>(rng()));
      auto target = std::uniform_int_distribution<long>{20, 600}(rng);
      auto replies = await_replies(target);
      bool store_under_way = await_store(victim, nodes);
      std::string what;
      if (victim < 0) {
        c.kill_front(name + ", after " + std::to_string(replies) + " replies");
        what = "front killed";
      } else {
        c.kill_node(victim,
                    name + ", after " + std::to_string(replies) + " replies");
        what = "node " + std::to_string(victim) + " killed";
      }
      what += " after " + std::to_string(replies) + " replies"
              + (store_under_way ? ", a STORE there under way"
                                 : ", no STORE there under way");
      if (replies < target)
        fail(name + ": " + std::to_string(replies)
             + " replies before the kill, " + std::to_string(target)
             + " wanted (" + std::to_string(drivers_running.load())
             + " client(s) still running)");
      if (victim >= 0) {
        // The load goes on against the dead node for a while, then against
        // the restarted one; clients whose request got 'KO mailbox
        // unavailable' have stopped.
        std::this_thread::sleep_for(std::chrono::milliseconds{
          std::uniform_int_distribution<int>{0, 1500}(rng)});
        c.start_node(victim, name + ", restart");
        auto more = std::uniform_int_distribution<long>{20, 300}(rng);
        auto from = replies_in_round.load();
        auto give_up = std::chrono::steady_clock::now() + 30s;
        while (replies_in_round < from + more && drivers_running > 0
               && std::chrono::steady_clock::now() < give_up)
          std::this_thread::sleep_for(1ms);
        stop_round = true;
      }
      for (auto& t : threads)
        t.join();
      std::string cut;
      long unavailable_round = 0;
      for (auto& m : models) {
        for (auto& box : m.boxes)
          acknowledged += box.size();
        acknowledged += m.unstored.size();
        cut += " " + m.cut_off() + ";";
        unavailable_round += m.unavailable_replies;
        if (!m.driver_error.empty())
          fail(name + ": " + m.poster + ": the front stopped answering while "
               + "node " + std::to_string(victim) + " was killed: "
               + m.driver_error + " (front log " + c.front_log() + ")");
      }
      unavailable_total += unavailable_round;
      if (victim < 0) {
        if (unavailable_round > 0)
          note("  " + name + ": " + std::to_string(unavailable_round)
               + " 'KO mailbox unavailable' with every node up");
        c.start_front(name + ", restart after kill -9");
        verify_all(c.front->port, models, name);
      } else {
        if (c.front->exited()) {
          fail(name + ": the front exited while node " + std::to_string(victim)
               + " was killed (front log " + c.front_log() + ")");
          c.start_front(name + ", restart after it exited");
        }
        mark(c.front_log(), name + ": check through the running front");
        verify_all(c.front->port, models, name);
        // Then a kill -9 of the front with nothing under way: moves it left
        // unfinished complete at its restart, nothing else changes.
        c.kill_front(name + ", after the check");
        c.start_front(name + ", restart after kill -9 following the check");
        verify_all(c.front->port, models, name + " (front restarted)");
      }
      note(name + ": " + what + "; " + std::to_string(unavailable_round)
           + " 'KO mailbox unavailable'; cut off:" + cut + " "
           + (stopping_failures == 0 ? "state matches" : "MISMATCH"));
    }
    for (auto& m : models)
      for (auto& [text, how] : m.may_reappear)
        note("NOTE: " + m.poster + ": '" + text
             + "' of a STORE answered 'KO mailbox unavailable' (" + how
             + ") was found neither on the IMQ nor in a mailbox, even after "
               "a restart of the front (allowed: not acknowledged)");
    note("crash_test: " + std::to_string(acknowledged)
         + " acknowledged messages checked, "
         + std::to_string(unavailable_total)
         + " 'KO mailbox unavailable' answers");
  } catch (const std::exception& err) {
    fail(err.what());
  }
  stop_round = true;
  c.front.reset();
  for (auto& node : c.nodes)
    node.reset();
  if (failures == 0)
    std::filesystem::remove_all(c.root);
  else
    std::cerr << "data dirs and logs (front.log, node*.log) kept in " << c.root
              << "\n";
  return failures == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  int nodes = 0;
  int node_rounds = -1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--nodes" || arg == "--node-rounds") && i + 1 < argc)
      (arg == "--nodes" ? nodes : node_rounds) = std::stoi(argv[++i]);
    else
      positional.push_back(arg);
  }
  if (positional.empty() || nodes < 0 || nodes > max_nodes) {
    std::cerr << "usage: crash_test SERVER_BIN [ROUNDS] [CLIENTS] [--nodes N "
                 "[--node-rounds K]]\n";
    return 2;
  }
  std::string bin = positional[0];
  int rounds = positional.size() > 1 ? std::stoi(positional[1]) : 6;
  int clients = positional.size() > 2 ? std::stoi(positional[2]) : 4;
  if (node_rounds < 0)
    node_rounds = 2 * nodes;
  std::random_device rd;
  auto seed = rd();
  note("crash_test: seed " + std::to_string(seed) + ", "
       + std::to_string(rounds) + " rounds, " + std::to_string(clients)
       + " clients"
       + (nodes > 0 ? ", " + std::to_string(nodes) + " mailbox nodes, "
                        + std::to_string(node_rounds) + " node round(s)"
                    : std::string{}));
  std::mt19937 rng{seed};
  auto result = nodes > 0
                  ? run_cluster(bin, rounds, node_rounds, clients, nodes, rng)
                  : run_single(bin, rounds, clients, rng);
  if (result != 0) {
    std::cerr << failures << " failure(s); seed " << seed << "\n";
    return 1;
  }
  std::cout << "crash_test: all rounds passed\n";
  return 0;
}
