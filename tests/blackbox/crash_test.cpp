// Black-box crash test: load the built server, kill -9 it, restart, check.
//
// Usage: crash_test SERVER_BIN [ROUNDS] [CLIENTS]
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
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "app/line_client.hpp"

namespace {

using smsp::line_client;
using namespace std::chrono_literals;

std::mutex report_mutex;
std::atomic<int> failures{0};

/// Replies the clients have had in the current round, and clients still
/// driving it.
std::atomic<long> replies_in_round{0};
std::atomic<int> drivers_running{0};

void fail(const std::string& what) {
  std::lock_guard<std::mutex> guard{report_mutex};
  std::cerr << "FAIL: " << what << "\n";
  ++failures;
}

void note(const std::string& what) {
  std::lock_guard<std::mutex> guard{report_mutex};
  std::cout << what << std::endl;
}

/// The server as a child process.
struct server_process {
  pid_t pid = -1;
  uint16_t port = 0;

  server_process(const std::string& bin, const std::string& data_dir) {
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
      ::execl(bin.c_str(), bin.c_str(), "--port", "0", "--data-dir",
              data_dir.c_str(), "--pwhash", "min", "--hash-workers", "1",
              static_cast<char*>(nullptr));
      std::perror("exec");
      ::_exit(127);
    }
    ::close(out[1]);
    // "smsp-actors listening on 127.0.0.1:PORT"
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1 && c != '\n')
      line.push_back(c);
    ::close(out[0]);
    auto colon = line.rfind(':');
    if (line.find("listening on") == std::string::npos
        || colon == std::string::npos)
      throw std::runtime_error("server did not start: '" + line + "'");
    port = static_cast<uint16_t>(std::stoi(line.substr(colon + 1)));
  }

  void kill_hard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }

  ~server_process() {
    kill_hard();
  }
};

std::optional<std::string> cookie_of(const std::string& reply) {
  if (reply.rfind("OK ", 0) != 0 || reply.size() != 35)
    return std::nullopt;
  return reply.substr(3);
}

/// What one client knows the server acknowledged.
struct client_model {
  std::string poster, sink;
  /// Posted and not stored, oldest first.
  std::deque<std::string> unstored;
  /// The sink's mailbox, oldest first.
  std::deque<std::string> mailbox;
  /// Accounts registered (acknowledged) besides poster and sink.
  std::vector<std::string> accounts;
  /// The request the crash cut off, if any, e.g. "MESSAGE text".
  std::string in_flight;
  std::string in_flight_arg;
  int next_text = 0;
};

enum class op { message, store, getmsg, delmsg, enroll };

/// Runs requests until the server dies. Every reply is checked against
/// the model as well.
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
  std::unique_ptr<line_client> poster_conn, sink_conn;
  std::string poster_cookie, sink_cookie;
  try {
    poster_conn = std::make_unique<line_client>("127.0.0.1", port);
    sink_conn = std::make_unique<line_client>("127.0.0.1", port);
    auto p = cookie_of(poster_conn->call("LOGIN " + m.poster + " pw"));
    auto s = cookie_of(sink_conn->call("LOGIN " + m.sink + " pw"));
    if (!p || !s) {
      fail(m.poster + ": LOGIN refused at the start of round "
           + std::to_string(round));
      return;
    }
    poster_cookie = *p;
    sink_cookie = *s;
  } catch (const std::exception&) {
    return; // killed before the load began
  }
  for (;;) {
    auto pick = std::uniform_int_distribution<int>{0, 99}(rng);
    op next = pick < 40   ? op::message
              : pick < 70 ? op::store
              : pick < 80 ? op::getmsg
              : pick < 95 ? op::delmsg
                          : op::enroll;
    std::string reply;
    try {
      switch (next) {
        case op::message: {
          auto text = "r" + std::to_string(round) + " " + m.poster + " #"
                      + std::to_string(m.next_text++);
          m.in_flight = "MESSAGE";
          m.in_flight_arg = text;
          reply = poster_conn->call("MESSAGE " + text + " " + poster_cookie);
          if (reply != "OK")
            fail(m.poster + ": MESSAGE got '" + reply + "'");
          else
            m.unstored.push_back(text);
          break;
        }
        case op::store: {
          m.in_flight = "STORE";
          reply = poster_conn->call("STORE " + m.sink + " " + poster_cookie);
          if (m.unstored.empty()) {
            if (reply != "KO nothing to store")
              fail(m.poster + ": STORE with nothing posted got '" + reply
                   + "'");
          } else if (reply != "OK") {
            fail(m.poster + ": STORE got '" + reply + "'");
          } else {
            m.mailbox.push_back(m.unstored.back());
            m.unstored.pop_back();
          }
          break;
        }
        case op::getmsg: {
          m.in_flight = "GETMSG";
          reply = sink_conn->call("GETMSG " + m.sink + " " + sink_cookie);
          auto expected = m.mailbox.empty() ? std::string{"KO mailbox empty"}
                                            : "OK " + m.mailbox.front();
          if (reply != expected)
            fail(m.sink + ": GETMSG got '" + reply + "', expected '" + expected
                 + "'");
          break;
        }
        case op::delmsg: {
          m.in_flight = "DELMSG";
          reply = sink_conn->call("DELMSG " + m.sink + " " + sink_cookie);
          if (m.mailbox.empty()) {
            if (reply != "KO mailbox empty")
              fail(m.sink + ": DELMSG on empty got '" + reply + "'");
          } else if (reply != "OK") {
            fail(m.sink + ": DELMSG got '" + reply + "'");
          } else {
            m.mailbox.pop_front();
          }
          break;
        }
        case op::enroll: {
          auto name = m.poster + "r" + std::to_string(round) + "n"
                      + std::to_string(m.accounts.size());
          m.in_flight = "REGISTER";
          m.in_flight_arg = name;
          reply = poster_conn->call("REGISTER " + name + " pw");
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
    } catch (const std::exception&) {
      return; // the server is gone: m.in_flight is the cut-off request
    }
  }
}

/// Reads a whole mailbox oldest first, emptying it.
std::vector<std::string> drain(line_client& conn, const std::string& user,
                               const std::string& cookie) {
  std::vector<std::string> texts;
  for (;;) {
    auto reply = conn.call("GETMSG " + user + " " + cookie);
    if (reply == "KO mailbox empty")
      break;
    if (reply.rfind("OK ", 0) != 0)
      throw std::runtime_error("GETMSG got '" + reply + "'");
    texts.push_back(reply.substr(3));
    auto del = conn.call("DELMSG " + user + " " + cookie);
    if (del != "OK")
      throw std::runtime_error("DELMSG got '" + del + "'");
  }
  return texts;
}

std::string show(const std::vector<std::string>& texts) {
  std::string out = "[";
  for (auto& text : texts)
    out += (out.size() > 1 ? "|" : "") + text;
  return out + "]";
}

/// Checks the restarted server against the model, then resets the model to
/// the (now empty) server state.
void verify(uint16_t port, client_model& m) {
  line_client conn{"127.0.0.1", port};
  for (auto& name : m.accounts)
    if (!cookie_of(conn.call("LOGIN " + name + " pw")))
      fail("acknowledged REGISTER of " + name + " lost");
  if (m.in_flight == "REGISTER") {
    // Either outcome is allowed; a wrong password must fail either way.
    auto reply = conn.call("LOGIN " + m.in_flight_arg + " wrong");
    if (cookie_of(reply))
      fail(m.in_flight_arg + ": wrong password accepted");
    else if (cookie_of(conn.call("LOGIN " + m.in_flight_arg + " pw")))
      m.accounts.push_back(m.in_flight_arg);
  }
  auto sink_cookie = cookie_of(conn.call("LOGIN " + m.sink + " pw"));
  auto poster_cookie = cookie_of(conn.call("LOGIN " + m.poster + " pw"));
  if (!sink_cookie || !poster_cookie) {
    fail(m.poster + "/" + m.sink + ": accounts lost");
    return;
  }
  auto mailbox = drain(conn, m.sink, *sink_cookie);
  // The IMQ, most recent first: STORE each into the (empty) sink, read it.
  std::vector<std::string> queued;
  for (;;) {
    auto reply = conn.call("STORE " + m.sink + " " + *poster_cookie);
    if (reply == "KO nothing to store")
      break;
    if (reply != "OK")
      throw std::runtime_error("STORE got '" + reply + "'");
    auto one = drain(conn, m.sink, *sink_cookie);
    if (one.size() != 1)
      throw std::runtime_error("one STORE delivered " + show(one));
    queued.push_back(one.front());
  }
  using texts = std::vector<std::string>;
  texts base_mailbox{m.mailbox.begin(), m.mailbox.end()};
  texts base_queued{m.unstored.rbegin(), m.unstored.rend()};
  std::vector<std::pair<texts, texts>> allowed{{base_mailbox, base_queued}};
  if (m.in_flight == "MESSAGE") {
    auto with_post = base_queued;
    with_post.insert(with_post.begin(), m.in_flight_arg);
    allowed.emplace_back(base_mailbox, with_post);
  } else if (m.in_flight == "STORE" && !base_queued.empty()) {
    auto stored = base_mailbox;
    stored.push_back(base_queued.front());
    allowed.emplace_back(stored,
                         texts{base_queued.begin() + 1, base_queued.end()});
  } else if (m.in_flight == "DELMSG" && !base_mailbox.empty()) {
    allowed.emplace_back(texts{base_mailbox.begin() + 1, base_mailbox.end()},
                         base_queued);
  }
  bool ok = false;
  for (auto& [box, imq] : allowed)
    ok = ok || (box == mailbox && imq == queued);
  if (!ok)
    fail(m.poster + " (cut off: '" + m.in_flight + "'): server has mailbox "
         + show(mailbox) + " imq " + show(queued) + ", acknowledged mailbox "
         + show(base_mailbox) + " imq " + show(base_queued));
  m.mailbox.clear();
  m.unstored.clear();
  m.in_flight.clear();
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: crash_test SERVER_BIN [ROUNDS] [CLIENTS]\n";
    return 2;
  }
  std::string bin = argv[1];
  int rounds = argc > 2 ? std::stoi(argv[2]) : 6;
  int clients = argc > 3 ? std::stoi(argv[3]) : 4;
  std::random_device rd;
  auto seed = rd();
  note("crash_test: seed " + std::to_string(seed) + ", "
       + std::to_string(rounds) + " rounds, " + std::to_string(clients)
       + " clients");
  std::mt19937 rng{seed};
  auto data_dir = (std::filesystem::temp_directory_path()
                   / ("smsp-crash-test-" + std::to_string(::getpid())))
                    .string();
  std::filesystem::remove_all(data_dir);
  std::vector<client_model> models(clients);
  try {
    {
      server_process srv{bin, data_dir};
      line_client conn{"127.0.0.1", srv.port};
      for (int i = 0; i < clients; ++i) {
        models[i].poster = "poster" + std::to_string(i);
        models[i].sink = "sink" + std::to_string(i);
        for (auto& name : {models[i].poster, models[i].sink})
          if (!cookie_of(conn.call("REGISTER " + name + " pw")))
            throw std::runtime_error("REGISTER " + name + " failed");
      }
      srv.kill_hard();
    }
    size_t acknowledged = 0;
    for (int round = 1; round <= rounds && failures == 0; ++round) {
      server_process srv{bin, data_dir};
      replies_in_round = 0;
      drivers_running = clients;
      std::vector<std::thread> threads;
      for (int i = 0; i < clients; ++i)
        threads.emplace_back(drive, srv.port, std::ref(models[i]), round,
                             static_cast<unsigned>(rng()));
      // Killed after a number of replies, not of milliseconds: on a slow
      // machine as on a fast one the round cuts into its load. The bound in
      // time is a hang detector; clients that stop early have failed.
      auto target = std::uniform_int_distribution<long>{20, 600}(rng);
      auto give_up = std::chrono::steady_clock::now() + 120s;
      while (replies_in_round < target && drivers_running > 0
             && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(1ms);
      auto replies = replies_in_round.load();
      srv.kill_hard();
      if (replies < target)
        fail("round " + std::to_string(round) + ": " + std::to_string(replies)
             + " replies before the kill, " + std::to_string(target)
             + " wanted (" + std::to_string(drivers_running.load())
             + " client(s) still running)");
      for (auto& t : threads)
        t.join();
      std::string cut;
      for (auto& m : models) {
        acknowledged += m.mailbox.size() + m.unstored.size();
        cut += " " + (m.in_flight.empty() ? "-" : m.in_flight);
      }
      server_process again{bin, data_dir};
      for (auto& m : models)
        verify(again.port, m);
      note("round " + std::to_string(round) + ": killed after "
           + std::to_string(replies) + " replies; cut off:" + cut + "; "
           + (failures == 0 ? "state matches" : "MISMATCH"));
      again.kill_hard();
    }
    note("crash_test: " + std::to_string(acknowledged)
         + " acknowledged messages checked");
  } catch (const std::exception& err) {
    fail(err.what());
  }
  std::filesystem::remove_all(data_dir);
  if (failures != 0) {
    std::cerr << failures << " failure(s); seed " << seed << "\n";
    return 1;
  }
  std::cout << "crash_test: all rounds passed\n";
  return 0;
}
