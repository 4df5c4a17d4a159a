// The connection broker byte for byte on CAF's test_multiplexer, no sockets.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "actors/messages.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "caf/io/network/test_multiplexer.hpp"
#include "caf/scheduler/test_coordinator.hpp"
#include "net/connection.hpp"
#include "net/connection_state.hpp"
#include "tests/test_support.hpp"

using namespace smsp;
using smsp::testing::manual_clock;
using smsp::testing::stderr_capture;
using namespace std::string_literals;
using namespace std::chrono_literals;

namespace {

// -- the scripted actors ------------------------------------------------------

/// One request the registry received, with the promise of its answer: the
/// test decides what it gets and when.
struct registry_call {
  /// The protocol word of the request, e.g. "COUNT".
  std::string command;
  std::vector<std::string> args;
  caf::response_promise promise;
};

/// What the scripted registry received, in order.
struct registry_script {
  std::vector<registry_call> calls;

  std::vector<std::string> commands() const {
    std::vector<std::string> out;
    for (auto& call : calls)
      out.push_back(call.command);
    return out;
  }
};

/// A registry that answers nothing by itself: each handler keeps its
/// response promise in the script.
registry_actor::behavior_type scripted_registry(registry_actor::pointer self,
                                                registry_script* script) {
  auto keep = [=](std::string command, std::vector<std::string> args) {
    auto promise = self->make_response_promise();
    script->calls.push_back({std::move(command), std::move(args), promise});
    return promise;
  };
  return {
    [=](register_atom, const std::string& user,
        const std::string& password) -> caf::result<std::string> {
      return keep("REGISTER", {user, password});
    },
    [=](login_atom, const std::string& user, const std::string& password,
        const std::string& addr) -> caf::result<std::string> {
      return keep("LOGIN", {user, password, addr});
    },
    [=](logout_atom, const std::string& cookie) -> caf::result<caf::ok_atom> {
      return keep("LOGOUT", {cookie});
    },
    [=](post_atom, const std::string& cookie,
        const std::string& text) -> caf::result<caf::ok_atom> {
      return keep("MESSAGE", {cookie, text});
    },
    [=](store_atom, const std::string& cookie,
        const std::string& user) -> caf::result<caf::ok_atom> {
      return keep("STORE", {cookie, user});
    },
    [=](count_atom, const std::string& cookie,
        const std::string& user) -> caf::result<uint64_t> {
      return keep("COUNT", {cookie, user});
    },
    [=](caf::get_atom, const std::string& cookie,
        const std::string& user) -> caf::result<std::string> {
      return keep("GETMSG", {cookie, user});
    },
    [=](caf::delete_atom, const std::string& cookie,
        const std::string& user) -> caf::result<caf::ok_atom> {
      return keep("DELMSG", {cookie, user});
    },
    [=](dump_atom) -> caf::result<caf::ok_atom> { return keep("DUMP", {}); },
    [=](stats_atom) -> caf::result<registry_figures> {
      return registry_figures{};
    },
    // admin tool: not used here.
    [=](sessions_atom) { return std::vector<std::string>{}; },
    [=](kick_atom, const std::string&) -> caf::result<caf::ok_atom> {
      return make_error(errc::not_logged_in);
    },
    [=](passwd_atom, const std::string&, const std::string&)
      -> caf::result<caf::ok_atom> { return make_error(errc::no_such_user); },
    [=](purge_atom, const std::string&) -> caf::result<uint64_t, uint64_t> {
      return make_error(errc::no_such_user);
    },
    [=](caf::tick_atom) {
      // The real registry passivates here; nothing to do.
    },
    // No mailbox nodes here.
    [=](node_atom, up_atom, uint64_t) {},
    [=](node_atom, down_atom, uint64_t) {},
    [=](penalty_atom, const std::string&, const std::string&) {},
    [=](metrics_atom) {
      return std::make_tuple(registry_figures{}, throttle_figures{});
    },
  };
}

/// What the scripted budget (the acceptor's part in output accounting)
/// received.
struct budget_script {
  /// Grants every request at once, as the acceptor does while the server
  /// has budget to spare. A pipeline of a GETMSG (whose reply may be a
  /// whole message text) and anything else needs a grant.
  bool grant_at_once = true;
  /// Grant requests: bytes asked and the promise of the answer (delivered
  /// already when grant_at_once).
  std::vector<std::pair<uint64_t, caf::response_promise>> grants;
  std::vector<uint64_t> releases;
};

caf::behavior scripted_budget(caf::event_based_actor* self,
                              budget_script* script) {
  return {
    [=](grant_atom, uint64_t bytes) -> caf::result<uint64_t> {
      auto promise = self->make_response_promise();
      script->grants.emplace_back(bytes, promise);
      if (script->grant_at_once)
        promise.deliver(bytes);
      return promise;
    },
    [=](release_atom, uint64_t bytes) { script->releases.push_back(bytes); },
  };
}

/// What the scripted metrics actor received: every connection report.
struct metrics_script {
  std::vector<connection_report> reports;
};

metrics_actor::behavior_type scripted_metrics(metrics_actor::pointer self,
                                              metrics_script* script) {
  return {
    [=](report_atom, const connection_report& report) {
      script->reports.push_back(report);
    },
    [=](metrics_atom) { return connection_totals{}; },
  };
}

// -- the fixture --------------------------------------------------------------

/// A cookie the server could have issued; the scripted registry does not
/// check it, only the broker's shape check looks at it.
const std::string cookie = "0123456789abcdef0123456789abcdef";

/// Ordinary actors run on CAF's deterministic test_coordinator, brokers on
/// the test_multiplexer; both only when the test drives them, on the test's
/// own thread. CAF's delayed messages (the broker's settle timer and its
/// watchdog) wait on the coordinator's clock until the test advances it.
caf::actor_system_config& deterministic(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.set("middleman.network-backend", caf::atom("testing"));
  cfg.set("middleman.manual-multiplexing", true);
  cfg.set("middleman.workers", size_t{0});
  cfg.set("logger.file-verbosity", caf::atom("quiet"));
  cfg.set("logger.console", caf::atom("none"));
  cfg.load<caf::io::middleman>();
  return cfg;
}

struct fixture {
  fixture()
    : sys(deterministic(sys_cfg)),
      sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
      mpx(dynamic_cast<caf::io::network::test_multiplexer&>(
        sys.middleman().backend())),
      observer(sys) {
    registry = sys.spawn(scripted_registry, &registry_log);
    budget = sys.spawn(scripted_budget, &budget_log);
    run();
  }

  ~fixture() {
    // The kept promises hold the broker; drop them, then stop every actor
    // and let it finish, or the actor system waits for them forever.
    registry_log.calls.clear();
    budget_log.grants.clear();
    if (conn)
      caf::anon_send_exit(conn, caf::exit_reason::kill);
    if (metrics)
      caf::anon_send_exit(metrics, caf::exit_reason::kill);
    caf::anon_send_exit(registry, caf::exit_reason::kill);
    caf::anon_send_exit(budget, caf::exit_reason::kill);
    settled();
  }

  /// A connection_config on the manual clock, with round numbers.
  connection_config config() const {
    connection_config cfg;
    cfg.now = clock.fn();
    cfg.waits.request = 10s;
    cfg.waits.hashing = 120s;
    cfg.idle_timeout = 60s;
    return cfg;
  }

  /// Opens the connection: a broker on a new scribe, as the acceptor would
  /// fork it.
  void connect(connection_config cfg) {
    mpx.provide_scribe("client", 1, hdl);
    auto spawned = sys.middleman().spawn_client(
      connection, "client", 1, connection_deps{registry, budget, cfg, metrics});
    REQUIRE(spawned);
    conn = *spawned;
    observer->monitor(conn);
    run();
  }

  void connect() {
    connect(config());
  }

  /// Opens the connection with metrics on: it reports to a scripted
  /// metrics actor (metrics_log).
  void connect_counting() {
    metrics = sys.spawn(scripted_metrics, &metrics_log);
    connect();
  }

  /// Lets CAF's clock pass `d` (the broker's report timer runs on it).
  void pass(caf::timespan d) {
    sched.clock().advance_time(d);
    run();
  }

  /// Runs every actor and broker until none has anything left to do. A
  /// broker and an actor that keep messaging each other fail the test
  /// instead of hanging it.
  void run() {
    if (!settled())
      FAIL("the actors are still busy after 10000 rounds: a message loop");
  }

  /// Runs until nothing is left to do (true) or for 10000 rounds.
  bool settled() {
    for (size_t rounds = 0; rounds < 10000; ++rounds) {
      bool busy = false;
      while (mpx.try_exec_runnable())
        busy = true;
      if (sched.run() > 0)
        busy = true;
      if (!busy)
        return true;
    }
    return false;
  }

  /// The client sends `bytes`; the broker reads what its read state lets
  /// it.
  void send(const std::string& bytes) {
    mpx.virtual_send(hdl, std::vector<char>(bytes.begin(), bytes.end()));
    run();
  }

  /// The socket became readable again: the broker reads what waits.
  void readable() {
    mpx.read_data(hdl);
    run();
  }

  /// Bytes the client sent that the broker has not read.
  size_t unread_input() {
    return mpx.virtual_network_buffer(hdl).size();
  }

  /// Whether the broker asked the multiplexer to stop reading its socket.
  bool reading_halted() {
    return mpx.passive_mode(hdl);
  }

  /// What the broker wrote that the client has not taken yet.
  std::string output() {
    auto& buf = mpx.output_buffer(hdl);
    return std::string(buf.begin(), buf.end());
  }

  /// The client takes `n` bytes of output: the socket write succeeded and
  /// CAF acknowledges it (ack_writes), with what remains unsent.
  void client_reads(size_t n) {
    auto& buf = mpx.output_buffer(hdl);
    REQUIRE(n <= buf.size());
    buf.erase(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
    mpx.impl_ptr(hdl)->data_transferred(&mpx, n, buf.size());
    run();
  }

  /// The client takes everything written so far; returns it.
  std::string client_reads_all() {
    auto text = output();
    client_reads(text.size());
    return text;
  }

  /// The client closes its end (CAF reports a failed read).
  void client_closes() {
    mpx.impl_ptr(hdl)->io_failure(&mpx, caf::io::network::operation::read);
    run();
  }

  /// Delivers the registry's answer to its `i`th request.
  template <class... Ts>
  void answer(size_t i, Ts&&... xs) {
    REQUIRE(i < registry_log.calls.size());
    registry_log.calls[i].promise.deliver(std::forward<Ts>(xs)...);
    run();
  }

  /// Grants the broker's `i`th budget request `bytes`.
  void grant(size_t i, uint64_t bytes) {
    REQUIRE(i < budget_log.grants.size());
    budget_log.grants[i].second.deliver(bytes);
    run();
  }

  std::vector<std::string> registry_commands() const {
    return registry_log.commands();
  }

  /// The watchdog's message, sent by hand after the manual clock moved.
  void tick() {
    caf::anon_send(conn, caf::tick_atom::value);
    run();
  }

  /// The acceptor's idle sweep, sent by hand.
  void idle() {
    caf::anon_send(conn, caf::idle_atom::value);
    run();
  }

  /// Lets CAF's clock pass the broker's 10 ms settle time after a switch of
  /// reading (not the manual clock: the broker sets that timer with CAF's).
  void settle() {
    sched.clock().advance_time(std::chrono::milliseconds{10});
    run();
  }

  /// Whether the broker quit (its down message arrived).
  bool stopped() {
    if (!down_seen)
      observer->receive([&](caf::down_msg&) { down_seen = true; },
                        caf::after(std::chrono::seconds{0}) >> [] {});
    return down_seen;
  }

  /// Whether the broker closed the socket itself and quit.
  bool closed() {
    return stopped() && mpx.stopped_reading(hdl);
  }

  caf::actor_system_config sys_cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  caf::io::network::test_multiplexer& mpx;
  /// Monitors the broker, to see it quit.
  caf::scoped_actor observer;
  bool down_seen = false;
  manual_clock clock;
  registry_script registry_log;
  budget_script budget_log;
  metrics_script metrics_log;
  metrics_actor metrics;
  registry_actor registry;
  caf::actor budget;
  caf::actor conn;
  caf::io::connection_handle hdl = caf::io::connection_handle::from_int(1);
};

std::string count_line(const std::string& user = "alice") {
  return "COUNT " + user + " " + cookie + "\n";
}

using strings = std::vector<std::string>;

} // namespace

// -- order of replies ---------------------------------------------------------

TEST_CASE("replies leave in request order when the registry answers out of "
          "order",
          "[broker]") {
  fixture f;
  f.connect();
  CHECK(f.mpx.ack_writes(f.hdl));
  f.send("COUNT alice " + cookie + "\nGETMSG alice " + cookie
         + "\nDELMSG alice " + cookie + "\n");
  REQUIRE(f.registry_commands() == strings{"COUNT", "GETMSG", "DELMSG"});
  CHECK(f.registry_log.calls[0].args == strings{cookie, "alice"});
  f.answer(2, caf::ok_atom::value);
  CHECK(f.output().empty());
  f.answer(1, "hello there"s);
  CHECK(f.output().empty());
  f.answer(0, uint64_t{2});
  CHECK(f.output() == "COUNTED 2\nOK hello there\nOK\n");
}

TEST_CASE("a domain error is answered as its KO line in its place",
          "[broker]") {
  fixture f;
  f.connect();
  f.send("GETMSG alice " + cookie + "\nMESSAGE hi " + cookie + "\nCOUNT bob "
         + cookie + "\n");
  REQUIRE(f.registry_commands() == strings{"GETMSG", "MESSAGE", "COUNT"});
  f.answer(2, make_error(errc::not_your_mailbox));
  f.answer(1, make_error(errc::not_logged_in));
  f.answer(0, make_error(errc::mailbox_empty));
  CHECK(f.output()
        == "KO mailbox empty\nYou should log in first.\nKO not your mailbox\n");
}

TEST_CASE("an error that is not a domain error is answered KO internal error",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.send(count_line());
  f.answer(0, caf::make_error(caf::sec::runtime_error));
  CHECK(f.output() == "KO internal error\n");
  log.restore();
  CHECK_THAT(log.text(), Catch::Contains("ERROR conn: internal error"));
}

TEST_CASE("a request to a registry that is gone is answered at once",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  caf::anon_send_exit(f.registry, caf::exit_reason::kill);
  f.run();
  // CAF bounces the request; no deadline needs to pass.
  f.send(count_line());
  CHECK(f.output() == "KO internal error\n");
}

TEST_CASE("a client that closes stops the broker and late answers go nowhere",
          "[broker]") {
  fixture f;
  f.connect();
  f.send(count_line());
  REQUIRE(f.registry_commands() == strings{"COUNT"});
  f.client_closes();
  CHECK(f.stopped());
  f.answer(0, uint64_t{1});
  CHECK(f.output().empty());
}

// -- barriers and pipelining --------------------------------------------------

TEST_CASE("pipelined requests all reach the registry at once", "[broker]") {
  fixture f;
  f.connect();
  f.send(count_line() + "GETMSG alice " + cookie + "\nDELMSG alice " + cookie
         + "\nMESSAGE hello " + cookie + "\nLOGOUT " + cookie + "\n");
  CHECK(f.registry_commands()
        == strings{"COUNT", "GETMSG", "DELMSG", "MESSAGE", "LOGOUT"});
}

TEST_CASE("max_in_flight bounds the requests with the registry at once",
          "[broker]") {
  fixture f;
  auto cfg = f.config();
  cfg.max_in_flight = 2;
  f.connect(cfg);
  f.send(count_line() + count_line("bob") + count_line("carol"));
  REQUIRE(f.registry_commands() == strings{"COUNT", "COUNT"});
  // An answer behind an unanswered one is not written, so it still counts.
  f.answer(1, uint64_t{2});
  CHECK(f.registry_commands() == strings{"COUNT", "COUNT"});
  f.answer(0, uint64_t{1});
  REQUIRE(f.registry_commands() == strings{"COUNT", "COUNT", "COUNT"});
  CHECK(f.registry_log.calls[2].args == strings{cookie, "carol"});
}

TEST_CASE("a barrier holds later requests until it is answered", "[broker]") {
  struct barrier {
    std::string line;
    std::string command;
  };
  auto [line, command] = GENERATE(barrier{"STORE bob " + cookie, "STORE"},
                                  barrier{"REGISTER carol s3cret", "REGISTER"},
                                  barrier{"LOGIN carol s3cret", "LOGIN"});
  CAPTURE(command);
  fixture f;
  auto cfg = f.config();
  // STORE is a barrier only when mailboxes are on nodes.
  cfg.mailboxes_on_nodes = true;
  f.connect(cfg);
  // The pipelined request before the barrier starts with it; the two after
  // wait, and a malformed line behind the barrier waits in its place too.
  f.send(count_line() + line + "\n" + count_line() + "BOGUS\n" + "GETMSG alice "
         + cookie + "\n");
  REQUIRE(f.registry_commands() == strings{"COUNT", command});
  f.answer(0, uint64_t{1});
  CHECK(f.registry_commands() == strings{"COUNT", command});
  CHECK(f.output() == "COUNTED 1\n");
  if (command == "STORE")
    f.answer(1, caf::ok_atom::value);
  else
    f.answer(1, std::string{cookie});
  REQUIRE(f.registry_commands()
          == strings{"COUNT", command, "COUNT", "GETMSG"});
  f.answer(3, "mail"s);
  f.answer(2, uint64_t{0});
  auto barrier_reply = command == "STORE" ? "OK\n" : "OK " + cookie + "\n";
  CHECK(f.output()
        == "COUNTED 1\n" + barrier_reply
             + "COUNTED 0\nKO unknown command\nOK mail\n");
}

TEST_CASE("STORE is pipelined when every mailbox is in this process",
          "[broker]") {
  fixture f;
  f.connect();
  f.send("MESSAGE hi " + cookie + "\nSTORE alice " + cookie + "\n"
         + count_line() + "MESSAGE again " + cookie + "\nSTORE bob " + cookie
         + "\n" + count_line());
  // All six reach the registry at once; the actors keep their order.
  REQUIRE(f.registry_commands()
          == strings{"MESSAGE", "STORE", "COUNT", "MESSAGE", "STORE", "COUNT"});
  f.answer(4, caf::ok_atom::value);
  f.answer(2, uint64_t{1});
  f.answer(5, uint64_t{1});
  CHECK(f.output().empty());
  f.answer(0, caf::ok_atom::value);
  f.answer(1, caf::ok_atom::value);
  f.answer(3, caf::ok_atom::value);
  CHECK(f.output() == "OK\nOK\nCOUNTED 1\nOK\nOK\nCOUNTED 1\n");
}

TEST_CASE("LOGIN tells the registry the client's address", "[broker]") {
  fixture f;
  f.connect();
  f.send("LOGIN carol s3cret\n");
  REQUIRE(f.registry_commands() == strings{"LOGIN"});
  // test_multiplexer's scribes all have the address "test".
  CHECK(f.registry_log.calls[0].args == strings{"carol", "s3cret", "test"});
}

TEST_CASE("DUMP waits for the requests before it and holds those after",
          "[broker]") {
  fixture f;
  f.connect();
  f.send(count_line() + "DUMP\n" + count_line("bob"));
  // DUMP must show the effects of what came before it.
  REQUIRE(f.registry_commands() == strings{"COUNT"});
  f.answer(0, uint64_t{4});
  REQUIRE(f.registry_commands() == strings{"COUNT", "DUMP"});
  CHECK(f.output() == "COUNTED 4\n");
  f.answer(1, caf::ok_atom::value);
  REQUIRE(f.registry_commands() == strings{"COUNT", "DUMP", "COUNT"});
  CHECK(f.registry_log.calls[2].args == strings{cookie, "bob"});
  f.answer(2, uint64_t{0});
  CHECK(f.output() == "COUNTED 4\nOK\nCOUNTED 0\n");
}

// -- malformed lines, terminators, cookies ------------------------------------

TEST_CASE("a malformed line in the middle of a pipeline is answered in its "
          "place",
          "[broker]") {
  fixture f;
  f.connect();
  f.send(count_line() + "FROB\n" + "STORE bob\n" + "\n" + "GETMSG alice "
         + cookie + "\n");
  // Nothing of the malformed lines reaches the registry.
  REQUIRE(f.registry_commands() == strings{"COUNT", "GETMSG"});
  CHECK(f.output().empty());
  f.answer(1, "hi"s);
  CHECK(f.output().empty());
  f.answer(0, uint64_t{3});
  CHECK(f.output()
        == "COUNTED 3\nKO unknown command\nKO usage: STORE <username> "
           "<cookie>\nKO empty request\nOK hi\n");
}

TEST_CASE("each reply ends like its request: CRLF, LF or NUL", "[broker]") {
  fixture f;
  f.connect();
  auto body = "COUNT alice " + cookie;
  f.send(body + "\r\n" + body + "\n" + body + "\0"s + "FROB\r\n" + "FROB\0"s);
  // A CRLF split between two reads is still one CRLF.
  f.send(body + "\r");
  f.send("\n");
  REQUIRE(f.registry_commands() == strings{"COUNT", "COUNT", "COUNT", "COUNT"});
  for (size_t i = 0; i < 4; ++i)
    f.answer(i, uint64_t{i});
  CHECK(f.output()
        == "COUNTED 0\r\nCOUNTED 1\nCOUNTED 2\0"s
             + "KO unknown command\r\nKO unknown command\0"s + "COUNTED 3\r\n");
}

TEST_CASE("a cookie the server cannot have issued is answered without asking "
          "the registry",
          "[broker]") {
  fixture f;
  f.connect();
  auto upper = "0123456789ABCDEF0123456789ABCDEF";
  auto too_short = cookie.substr(1);
  f.send(count_line() + "COUNT alice nocookie\n" + "MESSAGE hello nocookie\n"
         + "GETMSG alice " + upper + "\n" + "LOGOUT " + too_short + "\n"
         + "STORE bob nocookie\n" + count_line("bob"));
  // STORE, a barrier, was answered at once and so held nothing.
  REQUIRE(f.registry_commands() == strings{"COUNT", "COUNT"});
  CHECK(f.registry_log.calls[1].args == strings{cookie, "bob"});
  // Answered at once, but written in order: after the first COUNT.
  CHECK(f.output().empty());
  f.answer(0, uint64_t{1});
  CHECK(f.output()
        == "COUNTED 1\nKO not logged in\nYou should log in first.\n"
           "KO not logged in\nKO not logged in\nKO not logged in\n");
  f.answer(1, uint64_t{2});
  CHECK(f.output()
        == "COUNTED 1\nKO not logged in\nYou should log in first.\n"
           "KO not logged in\nKO not logged in\nKO not logged in\n"
           "COUNTED 2\n");
}

// -- reading paused and resumed -----------------------------------------------

TEST_CASE("reading pauses at max_queued and resumes when the queue drains",
          "[broker]") {
  fixture f;
  auto cfg = f.config();
  // STORE serves as the barrier that holds later requests.
  cfg.mailboxes_on_nodes = true;
  cfg.max_queued = 2;
  f.connect(cfg);
  CHECK_FALSE(f.reading_halted());
  // The STORE holds the COUNTs behind it in the queue: two are the limit.
  f.send("STORE bob " + cookie + "\n" + count_line());
  CHECK_FALSE(f.reading_halted());
  f.send(count_line("bob"));
  REQUIRE(f.registry_commands() == strings{"STORE"});
  CHECK(f.reading_halted());
  // What the client sends now stays in the socket.
  auto more = "GETMSG alice " + cookie + "\n";
  f.send(more);
  CHECK(f.unread_input() == more.size());
  CHECK(f.registry_commands() == strings{"STORE"});
  // The queue drains once the STORE is answered; reading resumes after the
  // settle time.
  f.answer(0, caf::ok_atom::value);
  REQUIRE(f.registry_commands() == strings{"STORE", "COUNT", "COUNT"});
  CHECK(f.reading_halted());
  f.settle();
  CHECK_FALSE(f.reading_halted());
  f.readable();
  CHECK(f.unread_input() == 0);
  CHECK(f.registry_commands() == strings{"STORE", "COUNT", "COUNT", "GETMSG"});
}

TEST_CASE("reading pauses at max_queued_bytes and resumes when the queue "
          "drains",
          "[broker]") {
  fixture f;
  auto cfg = f.config();
  // STORE serves as the barrier that holds later requests.
  cfg.mailboxes_on_nodes = true;
  // Room for short requests, not for a long one, however the queue counts
  // its bytes (the lines, or the memory they take).
  cfg.max_queued_bytes = 2048;
  f.connect(cfg);
  f.send("STORE bob " + cookie + "\n" + count_line());
  CHECK_FALSE(f.reading_halted());
  f.send("MESSAGE " + std::string(3000, 'x') + " " + cookie + "\n");
  CHECK(f.reading_halted());
  f.send(count_line("carol"));
  CHECK(f.unread_input() == count_line("carol").size());
  REQUIRE(f.registry_commands() == strings{"STORE"});
  f.answer(0, caf::ok_atom::value);
  CHECK(f.registry_commands() == strings{"STORE", "COUNT", "MESSAGE"});
  f.settle();
  CHECK_FALSE(f.reading_halted());
  f.readable();
  REQUIRE(f.registry_commands()
          == strings{"STORE", "COUNT", "MESSAGE", "COUNT"});
  CHECK(f.registry_log.calls[3].args == strings{cookie, "carol"});
}

TEST_CASE("each switch of reading settles before the next", "[broker]") {
  fixture f;
  auto cfg = f.config();
  // STORE serves as the barrier that holds later requests.
  cfg.mailboxes_on_nodes = true;
  cfg.max_queued = 1;
  f.connect(cfg);
  f.send("STORE bob " + cookie + "\n" + count_line());
  CHECK(f.reading_halted());
  f.answer(0, caf::ok_atom::value);
  // Drained, but the halt is still settling: reading resumes after it.
  CHECK(f.reading_halted());
  f.settle();
  CHECK_FALSE(f.reading_halted());
  // The queue fills again while the resume settles: reading goes on until
  // it has, then halts.
  f.send("STORE carol " + cookie + "\n" + count_line());
  CHECK_FALSE(f.reading_halted());
  f.settle();
  CHECK(f.reading_halted());
  f.answer(2, caf::ok_atom::value);
  REQUIRE(f.registry_commands() == strings{"STORE", "COUNT", "STORE", "COUNT"});
  f.settle();
  CHECK_FALSE(f.reading_halted());
}

// -- output allowance ---------------------------------------------------------

TEST_CASE("a request whose longest reply does not fit max_unsent waits until "
          "the client reads",
          "[broker]") {
  fixture f;
  auto cfg = f.config();
  // A GETMSG reply may be 105 bytes ("OK " + 100 + "\r\n"); max_unsent
  // holds one of them, so the budget never comes into play.
  cfg.wire.max_text = 100;
  cfg.max_unsent = 105;
  f.connect(cfg);
  auto getmsg = "GETMSG alice " + cookie + "\n";
  f.send(getmsg + getmsg + count_line());
  REQUIRE(f.registry_commands() == strings{"GETMSG"});
  f.answer(0, "hello"s);
  CHECK(f.output() == "OK hello\n");
  // 9 bytes unsent plus 105 possible do not fit.
  CHECK(f.registry_commands() == strings{"GETMSG"});
  // The client takes part of the reply: still no room.
  f.client_reads(4);
  CHECK(f.registry_commands() == strings{"GETMSG"});
  f.client_reads(5);
  REQUIRE(f.registry_commands() == strings{"GETMSG", "GETMSG"});
  // The COUNT's 64 bytes do not fit beside a GETMSG's 105 either.
  // Once answered, the GETMSG holds only its 9 written bytes: the COUNT's
  // 64 fit beside them.
  f.answer(1, "again"s);
  CHECK(f.output() == "OK again\n");
  CHECK(f.registry_commands() == strings{"GETMSG", "GETMSG", "COUNT"});
  CHECK(f.budget_log.grants.empty());
}

TEST_CASE("a client that does not read its replies is no longer read",
          "[broker]") {
  fixture f;
  auto cfg = f.config();
  cfg.wire.max_text = 100;
  cfg.max_unsent = 105;
  cfg.max_queued = 2;
  f.connect(cfg);
  auto getmsg = "GETMSG alice " + cookie + "\n";
  f.send(getmsg + getmsg + getmsg + getmsg);
  REQUIRE(f.registry_commands() == strings{"GETMSG"});
  CHECK(f.reading_halted());
  f.answer(0, "one"s);
  CHECK(f.output() == "OK one\n");
  f.settle();
  // The answer was written, not read: nothing more starts, reading stays
  // off, and what the client sends stays in the socket.
  CHECK(f.registry_commands() == strings{"GETMSG"});
  CHECK(f.reading_halted());
  f.send(count_line());
  CHECK(f.unread_input() == count_line().size());
  // Each reply the client reads lets one more request start.
  CHECK(f.client_reads_all() == "OK one\n");
  REQUIRE(f.registry_commands() == strings{"GETMSG", "GETMSG"});
  CHECK(f.reading_halted());
  f.answer(1, "two"s);
  CHECK(f.client_reads_all() == "OK two\n");
  REQUIRE(f.registry_commands() == strings{"GETMSG", "GETMSG", "GETMSG"});
  // One request waits now, fewer than max_queued: reading resumes.
  f.settle();
  CHECK_FALSE(f.reading_halted());
  f.readable();
  CHECK(f.unread_input() == 0);
}

TEST_CASE("beyond the free allowance a request waits for a grant from the "
          "budget",
          "[broker]") {
  fixture f;
  f.budget_log.grant_at_once = false;
  auto cfg = f.config();
  // Free allowance: the longest reply, 105 bytes. A COUNT reserves 64.
  cfg.wire.max_text = 100;
  cfg.max_unsent = 1000;
  f.connect(cfg);
  f.send(count_line() + count_line() + count_line() + count_line());
  // The first fits the free allowance; the second asks for a grant.
  REQUIRE(f.registry_commands() == strings{"COUNT"});
  REQUIRE(f.budget_log.grants.size() == 1);
  auto asked = f.budget_log.grants[0].first;
  CHECK(asked >= 2 * 64 - 105);
  CHECK(asked <= 1000 - 105);
  // One grant request at a time, and nothing needing it starts meanwhile.
  f.send(count_line());
  f.settle();
  CHECK(f.registry_commands() == strings{"COUNT"});
  CHECK(f.budget_log.grants.size() == 1);
  // Granted: everything fits and starts.
  f.grant(0, asked);
  CHECK(f.registry_commands()
        == strings{"COUNT", "COUNT", "COUNT", "COUNT", "COUNT"});
  for (size_t i = 0; i < 5; ++i)
    f.answer(i, uint64_t{i + 1});
  CHECK(f.client_reads_all()
        == "COUNTED 1\nCOUNTED 2\nCOUNTED 3\nCOUNTED 4\nCOUNTED 5\n");
  // Nothing outstanding: the idle sweep gives the whole grant back.
  f.idle();
  CHECK(f.budget_log.releases == std::vector<uint64_t>{asked});
}

TEST_CASE("a smaller grant than asked starts what it covers and asks again",
          "[broker]") {
  fixture f;
  f.budget_log.grant_at_once = false;
  auto cfg = f.config();
  cfg.wire.max_text = 100;
  cfg.max_unsent = 1000;
  f.connect(cfg);
  f.send(count_line() + count_line() + count_line());
  REQUIRE(f.budget_log.grants.size() == 1);
  // 105 free + 64 granted hold two COUNTs (128), not three (192).
  f.grant(0, 64);
  CHECK(f.registry_commands() == strings{"COUNT", "COUNT"});
  REQUIRE(f.budget_log.grants.size() == 2);
  auto second = f.budget_log.grants[1].first;
  f.grant(1, second);
  CHECK(f.registry_commands() == strings{"COUNT", "COUNT", "COUNT"});
  for (size_t i = 0; i < 3; ++i)
    f.answer(i, uint64_t{i});
  f.client_reads_all();
  // The acceptor runs short and asks for spare grants back.
  caf::anon_send(f.conn, reclaim_atom::value);
  f.run();
  CHECK(f.budget_log.releases == std::vector<uint64_t>{64 + second});
}

// -- deadlines ----------------------------------------------------------------

TEST_CASE("an unanswered request gets KO internal error at its deadline and "
          "its late answer is dropped",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.send(count_line() + count_line("bob"));
  REQUIRE(f.registry_commands() == strings{"COUNT", "COUNT"});
  f.answer(1, uint64_t{7});
  f.clock.advance(10s - 1ms);
  f.tick();
  CHECK(f.output().empty());
  f.clock.advance(1ms);
  f.tick();
  CHECK(f.output() == "KO internal error\nCOUNTED 7\n");
  f.answer(0, uint64_t{5});
  CHECK(f.output() == "KO internal error\nCOUNTED 7\n");
  log.restore();
  CHECK_THAT(log.text(), Catch::Contains("no answer in time to a COUNT"));
}

TEST_CASE("a barrier past its deadline releases the requests behind it",
          "[broker]") {
  stderr_capture log;
  fixture f;
  auto cfg = f.config();
  cfg.mailboxes_on_nodes = true;
  f.connect(cfg);
  f.send("STORE bob " + cookie + "\n" + count_line());
  REQUIRE(f.registry_commands() == strings{"STORE"});
  f.clock.advance(10s);
  f.tick();
  CHECK(f.output() == "KO internal error\n");
  REQUIRE(f.registry_commands() == strings{"STORE", "COUNT"});
  // The STORE's late answer changes nothing.
  f.answer(0, caf::ok_atom::value);
  f.answer(1, uint64_t{0});
  CHECK(f.output() == "KO internal error\nCOUNTED 0\n");
}

TEST_CASE("a DUMP past its deadline before it ran leaves the next DUMP free "
          "to run",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.send(count_line() + "DUMP\n");
  REQUIRE(f.registry_commands() == strings{"COUNT"});
  f.clock.advance(10s);
  f.tick();
  CHECK(f.output() == "KO internal error\nKO internal error\n");
  f.send("DUMP\n");
  REQUIRE(f.registry_commands() == strings{"COUNT", "DUMP"});
  f.answer(1, caf::ok_atom::value);
  CHECK(f.output() == "KO internal error\nKO internal error\nOK\n");
}

TEST_CASE("LOGIN's deadline includes the wait for a password hash",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.send("LOGIN carol s3cret\n");
  REQUIRE(f.registry_commands() == strings{"LOGIN"});
  f.clock.advance(10s);
  f.tick();
  CHECK(f.output().empty());
  f.clock.advance(120s - 1ms);
  f.tick();
  CHECK(f.output().empty());
  f.clock.advance(1ms);
  f.tick();
  CHECK(f.output() == "KO internal error\n");
}

// -- the idle rule ------------------------------------------------------------

TEST_CASE("a silent connection is closed once idle_timeout has passed, not "
          "before",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.clock.advance(60s - 1ms);
  f.idle();
  CHECK_FALSE(f.closed());
  f.clock.advance(1ms);
  f.idle();
  CHECK(f.closed());
  log.restore();
  CHECK_THAT(log.text(), Catch::Contains("closed: idle for 60 s"));
}

TEST_CASE("bytes of an unfinished request do not keep a connection open",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.clock.advance(30s);
  f.send("COUNT ali");
  f.clock.advance(30s);
  f.idle();
  CHECK(f.closed());
  log.restore();
  CHECK_THAT(log.text(),
             Catch::Contains("dropping 9 bytes of an unfinished request"));
}

TEST_CASE("a request answered and read restarts the idle time", "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.clock.advance(50s);
  f.send(count_line());
  f.answer(0, uint64_t{0});
  f.client_reads_all();
  f.clock.advance(60s - 1ms);
  f.idle();
  CHECK_FALSE(f.closed());
  f.clock.advance(1ms);
  f.idle();
  CHECK(f.closed());
}

// A client taking reply bytes is progress (connection_config::idle_timeout):
// the idle time starts when it has read the last one, not when that reply
// was written. (Found by this test: a client that took 59 s to read a reply
// was closed 1 s after it finished.)
TEST_CASE("a client that has just read its replies gets the whole "
          "idle_timeout",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.send(count_line());
  f.answer(0, uint64_t{12});
  f.clock.advance(59s);
  CHECK(f.client_reads_all() == "COUNTED 12\n");
  f.clock.advance(1s);
  f.idle();
  CHECK_FALSE(f.closed());
  f.clock.advance(59s);
  f.idle();
  CHECK(f.closed());
}

TEST_CASE("a connection is not closed while a request is in flight",
          "[broker]") {
  stderr_capture log;
  fixture f;
  auto cfg = f.config();
  // Shorter than the request's deadline, which the test never checks.
  cfg.idle_timeout = 5s;
  f.connect(cfg);
  f.send(count_line());
  f.clock.advance(5s);
  f.idle();
  CHECK_FALSE(f.closed());
  f.clock.advance(4s);
  f.idle();
  CHECK_FALSE(f.closed());
  // Answered and read: idle from the reply on.
  f.answer(0, uint64_t{1});
  CHECK(f.client_reads_all() == "COUNTED 1\n");
  f.clock.advance(5s - 1ms);
  f.idle();
  CHECK_FALSE(f.closed());
  f.clock.advance(1ms);
  f.idle();
  CHECK(f.closed());
}

TEST_CASE("a connection whose client takes no reply bytes for idle_timeout is "
          "closed",
          "[broker]") {
  stderr_capture log;
  fixture f;
  f.connect();
  f.send(count_line());
  f.answer(0, uint64_t{12});
  CHECK(f.output() == "COUNTED 12\n");
  f.clock.advance(60s - 1ms);
  f.idle();
  CHECK_FALSE(f.closed());
  // Taking some bytes is progress.
  f.client_reads(3);
  f.clock.advance(60s - 1ms);
  f.idle();
  CHECK_FALSE(f.closed());
  f.clock.advance(1ms);
  f.idle();
  CHECK(f.closed());
  log.restore();
  CHECK_THAT(log.text(), Catch::Contains("8 bytes of replies unread for 60 s"));
}

// -- metrics ------------------------------------------------------------------

namespace {

/// Requests of command `cmd` with result `r` in a report.
uint64_t counted(const connection_report& report, command cmd,
                 request_result r) {
  return report.requests
    .counts[static_cast<size_t>(cmd)][static_cast<size_t>(r)];
}

} // namespace

TEST_CASE("without a metrics actor a connection counts and reports nothing",
          "[broker][metrics]") {
  fixture f;
  f.connect();
  f.send(count_line());
  f.answer(0, uint64_t{1});
  f.pass(std::chrono::seconds{2});
  f.client_closes();
  CHECK(f.stopped());
  CHECK(f.metrics_log.reports.empty());
}

TEST_CASE("a busy connection reports its requests by command and result "
          "once per report interval, an idle one never",
          "[broker][metrics]") {
  fixture f;
  f.connect_counting();
  f.send(count_line() + "GETMSG alice " + cookie
         + "\nFROB\nCOUNT alice\nCOUNT alice nocookie\n");
  REQUIRE(f.registry_commands() == strings{"COUNT", "GETMSG"});
  f.answer(0, uint64_t{3});
  f.answer(1, make_error(errc::mailbox_empty));
  // Nothing is reported before the interval has passed.
  f.pass(std::chrono::milliseconds{999});
  CHECK(f.metrics_log.reports.empty());
  f.pass(std::chrono::milliseconds{1});
  REQUIRE(f.metrics_log.reports.size() == 1);
  auto& r = f.metrics_log.reports[0];
  CHECK_FALSE(r.closed);
  CHECK(r.requests.total() == 5);
  CHECK(counted(r, command::count, request_result::ok) == 1);
  CHECK(counted(r, command::getmsg, result_of(errc::mailbox_empty)) == 1);
  CHECK(counted(r, command::count, request_result::bad_request) == 1);
  CHECK(counted(r, command::count, result_of(errc::not_logged_in)) == 1);
  CHECK(r.requests.counts[unknown_command]
                         [static_cast<size_t>(request_result::bad_request)]
        == 1);
  // Every request counted has a latency, the malformed one too (0 s).
  CHECK(r.requests.latency[static_cast<size_t>(command::count)].count() == 3);
  // Idle: no timer, so no report, however long it stays so.
  f.pass(std::chrono::seconds{30});
  CHECK(f.metrics_log.reports.size() == 1);
  // Busy again: one more report for all the requests of the next interval.
  f.send(count_line());
  f.send(count_line());
  f.answer(2, uint64_t{1});
  f.answer(3, uint64_t{1});
  f.pass(std::chrono::seconds{1});
  REQUIRE(f.metrics_log.reports.size() == 2);
  CHECK(counted(f.metrics_log.reports[1], command::count, request_result::ok)
        == 2);
  CHECK(f.metrics_log.reports[1].requests.total() == 2);
}

TEST_CASE("a closing connection reports what is left and why it closed",
          "[broker][metrics]") {
  SECTION("the client closed") {
    fixture f;
    f.connect_counting();
    f.send(count_line());
    f.answer(0, uint64_t{1});
    f.client_closes();
    CHECK(f.stopped());
    REQUIRE(f.metrics_log.reports.size() == 1);
    auto& r = f.metrics_log.reports[0];
    CHECK(r.closed);
    CHECK(r.reason == static_cast<uint8_t>(close_reason::client_closed));
    CHECK(counted(r, command::count, request_result::ok) == 1);
    // Its reminder goes nowhere: the broker is gone.
    f.pass(std::chrono::seconds{2});
    CHECK(f.metrics_log.reports.size() == 1);
  }
  SECTION("it was idle") {
    stderr_capture log;
    fixture f;
    f.connect_counting();
    f.clock.advance(60s);
    f.idle();
    CHECK(f.closed());
    REQUIRE(f.metrics_log.reports.size() == 1);
    CHECK(f.metrics_log.reports[0].closed);
    CHECK(f.metrics_log.reports[0].reason
          == static_cast<uint8_t>(close_reason::idle));
    CHECK(f.metrics_log.reports[0].requests.empty());
  }
}

TEST_CASE("a request past its deadline counts as an internal error",
          "[broker][metrics]") {
  stderr_capture log;
  fixture f;
  f.connect_counting();
  f.send(count_line());
  f.clock.advance(10s);
  f.tick();
  CHECK(f.output() == "KO internal error\n");
  f.pass(std::chrono::seconds{1});
  REQUIRE_FALSE(f.metrics_log.reports.empty());
  CHECK(counted(f.metrics_log.reports[0], command::count,
                request_result::internal_error)
        == 1);
}
