// Server tests over real TCP: an in-process server and socket clients.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include <sys/socket.h>

#include "app/line_client.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "net/server.hpp"

using smsp::line_client;
using namespace std::string_literals;

namespace {

/// A whole server in this process, listening on 127.0.0.1 and a free port.
struct test_server {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  smsp::server srv;

  explicit test_server(smsp::server_config conf = {},
                       smsp::pwhash_cost cost = smsp::pwhash_cost::min) {
    cfg.load<caf::io::middleman>();
    cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(cfg);
    conf.port = 0;
    conf.hashing.cost = cost;
    auto started = smsp::start_server(*sys, conf);
    if (!started)
      FAIL("server did not start: " << sys->render(started.error()));
    srv = *started;
  }

  ~test_server() {
    smsp::stop_server(srv);
  }

  std::unique_ptr<line_client> connect() {
    return std::make_unique<line_client>("127.0.0.1", srv.port);
  }
};

std::string cookie_of(const std::string& reply) {
  REQUIRE(reply.size() == 35);
  REQUIRE(reply.substr(0, 3) == "OK ");
  return reply.substr(3);
}

std::string register_user(line_client& c, const std::string& name) {
  return cookie_of(c.call("REGISTER " + name + " pw-" + name));
}

/// Resident set size of this process in KiB.
long rss_kib() {
  std::ifstream status{"/proc/self/status"};
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      long kib = 0;
      status >> kib;
      return kib;
    }
    status.ignore(4096, '\n');
  }
  return -1;
}

/// Stands in for a registry that hangs on COUNT (and answers everything
/// else at once), to exercise the connection's deadlines. It keeps the
/// COUNT promises, so nothing but the deadline can answer them.
struct hanging_registry_state {
  std::vector<caf::typed_response_promise<uint64_t>> never_answered;
};

smsp::registry_actor::behavior_type hanging_registry(
  smsp::registry_actor::stateful_pointer<hanging_registry_state> self) {
  using namespace smsp;
  return {
    [=](register_atom, std::string&, std::string&) { return "c0ffee"s; },
    [=](login_atom, std::string&, std::string&) { return "c0ffee"s; },
    [=](logout_atom, std::string&) { return caf::ok_atom::value; },
    [=](post_atom, std::string&, std::string&) { return caf::ok_atom::value; },
    [=](store_atom, std::string&, std::string&) { return caf::ok_atom::value; },
    [=](count_atom, std::string&, std::string&) {
      auto rp = self->make_response_promise<uint64_t>();
      self->state.never_answered.push_back(rp);
      return rp;
    },
    [=](caf::get_atom, std::string&, std::string&) { return "text"s; },
    [=](caf::delete_atom, std::string&, std::string&) {
      return caf::ok_atom::value;
    },
    [=](dump_atom) { return caf::ok_atom::value; },
  };
}

} // namespace

TEST_CASE("a request the actors never answer gets KO internal error at its "
          "deadline and the connection goes on",
          "[server]") {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  smsp::connection_deps deps;
  deps.registry = sys.spawn(hanging_registry);
  deps.waits.request = std::chrono::milliseconds{300};
  deps.watchdog_interval = std::chrono::milliseconds{50};
  auto bound = smsp::listen(sys, deps, "127.0.0.1", 0);
  REQUIRE(bound);
  {
    line_client c{"127.0.0.1", bound->port};
    auto start = std::chrono::steady_clock::now();
    c.send_raw("COUNT u c0ffee\nGETMSG u c0ffee\nLOGOUT c0ffee\n");
    CHECK(c.read_reply() == std::string{"KO internal error"});
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK(waited >= std::chrono::milliseconds{300});
    CHECK(waited < std::chrono::seconds{3});
    // The requests behind it were answered meanwhile and keep their order.
    CHECK(c.read_reply() == std::string{"OK text"});
    CHECK(c.read_reply() == std::string{"OK"});
    CHECK(c.call("GETMSG u c0ffee") == "OK text");
  }
  smsp::stop_listening(bound->acceptor);
  caf::anon_send_exit(deps.registry, caf::exit_reason::user_shutdown);
}

TEST_CASE("a whole mail exchange over TCP", "[server]") {
  test_server server;
  auto alice = server.connect();
  auto bob = server.connect();
  auto a = register_user(*alice, "alice");
  auto b = register_user(*bob, "bob");
  CHECK(a != b);
  CHECK(alice->call("MESSAGE hello bob,  lunch at noon? " + a) == "OK");
  CHECK(alice->call("STORE bob " + a) == "OK");
  CHECK(bob->call("COUNT bob " + b) == "COUNTED 1");
  CHECK(bob->call("GETMSG bob " + b) == "OK hello bob,  lunch at noon?");
  CHECK(bob->call("COUNT bob " + b) == "COUNTED 1");
  CHECK(bob->call("DELMSG bob " + b) == "OK");
  CHECK(bob->call("COUNT bob " + b) == "COUNTED 0");
  CHECK(bob->call("GETMSG bob " + b) == "KO mailbox empty");
  CHECK(alice->call("COUNT bob " + a) == "KO not your mailbox");
  CHECK(alice->call("COUNT nobody " + a) == "KO not your mailbox");
  CHECK(alice->call("STORE alice " + a) == "KO nothing to store");
  CHECK(alice->call("STORE nobody " + a) == "KO no such user");
  CHECK(alice->call("MESSAGE again " + a) == "OK");
  CHECK(alice->call("STORE nobody " + a) == "KO no such user");
  CHECK(alice->call("STORE alice " + a) == "OK");
  CHECK(alice->call("GETMSG alice " + a) == "OK again");
  CHECK(alice->call("MESSAGE hi 0123456789abcdef0123456789abcdef") ==
        "You should log in first.");
  CHECK(alice->call("COUNT alice 0123456789abcdef0123456789abcdef") ==
        "KO not logged in");
  CHECK(alice->call("LOGIN alice wrong") == "KO wrong username or password");
  CHECK(alice->call("LOGIN nobody wrong") == "KO wrong username or password");
  auto a2 = cookie_of(alice->call("login alice pw-alice"));
  CHECK(alice->call("COUNT alice " + a) == "KO not logged in");
  CHECK(alice->call("COUNT alice " + a2) == "COUNTED 1");
  CHECK(alice->call("LOGOUT " + a2) == "OK");
  CHECK(alice->call("LOGOUT " + a2) == "KO not logged in");
  CHECK(alice->call("REGISTER alice other") == "KO user exists");
  CHECK(alice->call("REGISTER al_ice pw") == "KO bad username");
  CHECK(alice->call("DUMP") == "OK");
  CHECK(alice->call("NOPE") == "KO unknown command");
  CHECK(alice->call("") == "KO empty request");
  CHECK(alice->call("DELMSG bob") == "KO usage: DELMSG <username> <cookie>");
}

TEST_CASE("replies end with the terminator of their request", "[server]") {
  test_server server;
  auto c = server.connect();
  c->send_raw(std::string{"DUMP\r\nNOPE\0DUMP\n", 16});
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  while (got.size() < 26 && std::chrono::steady_clock::now() < deadline) {
    char buf[64];
    auto n = ::recv(c->fd(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0)
      got.append(buf, static_cast<size_t>(n));
    else
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  CHECK(got == std::string{"OK\r\nKO unknown command\0OK\n", 26});
}

TEST_CASE("1000 pipelined requests in one write are answered in order",
          "[server]") {
  test_server server;
  auto c = server.connect();
  auto me = register_user(*c, "piper");
  // A STORE must see the MESSAGE sent just before it in the same write.
  std::string batch;
  std::vector<std::string> expected;
  for (int i = 0; i < 250; ++i) {
    batch += "MESSAGE note " + std::to_string(i) + " " + me + "\n";
    expected.push_back("OK");
    batch += "STORE piper " + me + "\n";
    expected.push_back("OK");
    batch += "COUNT piper " + me + "\n";
    expected.push_back("COUNTED " + std::to_string(i + 1));
    batch += (i % 2 == 0 ? "GETMSG piper " : "bogus ") + me + "\n";
    expected.push_back(i % 2 == 0 ? "OK note 0" : "KO unknown command");
  }
  c->send_raw(batch);
  for (size_t i = 0; i < expected.size(); ++i) {
    auto reply = c->read_reply();
    REQUIRE(reply);
    REQUIRE(*reply == expected[i]);
  }
}

TEST_CASE("pipelined requests take effect in the order sent", "[server]") {
  test_server server;
  auto c = server.connect();
  auto first = register_user(*c, "order");
  // The second LOGIN ends the first session before the COUNT is looked at;
  // the STORE lands before the COUNT and GETMSG that follow it.
  c->send_raw("LOGIN order pw-order\nCOUNT order " + first + "\nMESSAGE m1 " +
              first + "\n");
  auto second = cookie_of(*c->read_reply());
  CHECK(c->read_reply() == std::string{"KO not logged in"});
  CHECK(c->read_reply() == std::string{"You should log in first."});
  c->send_raw("MESSAGE m1 " + second + "\nMESSAGE m2 " + second +
              "\nSTORE order " + second + "\nCOUNT order " + second +
              "\nGETMSG order " + second + "\nDELMSG order " + second +
              "\nCOUNT order " + second + "\nSTORE order " + second +
              "\nGETMSG order " + second + "\nLOGOUT " + second +
              "\nCOUNT order " + second + "\n");
  for (auto expected : {"OK", "OK", "OK", "COUNTED 1", "OK m2", "OK",
                        "COUNTED 0", "OK", "OK m1", "OK", "KO not logged in"})
    CHECK(c->read_reply() == std::string{expected});
}

TEST_CASE("100 concurrent clients deliver every message exactly once",
          "[server]") {
  test_server server;
  auto admin = server.connect();
  auto inbox = register_user(*admin, "inbox");
  constexpr int clients = 100;
  constexpr int per_client = 20;
  std::vector<std::string> failures(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      try {
        line_client c{"127.0.0.1", server.srv.port};
        auto name = "poster" + std::to_string(i);
        auto reply = c.call("REGISTER " + name + " pw");
        auto me = reply.substr(3);
        for (int j = 0; j < per_client; ++j) {
          auto text = name + "-" + std::to_string(j);
          if (c.call("MESSAGE " + text + " " + me) != "OK" ||
              c.call("STORE inbox " + me) != "OK")
            failures[i] = "request failed at " + text;
        }
      } catch (std::exception& e) {
        failures[i] = e.what();
      }
    });
  for (auto& t : threads)
    t.join();
  for (auto& f : failures)
    CHECK(f.empty());
  CHECK(admin->call("COUNT inbox " + inbox) ==
        "COUNTED " + std::to_string(clients * per_client));
  // Each poster's messages arrive in its own order, none twice.
  std::vector<int> next(clients, 0);
  for (int k = 0; k < clients * per_client; ++k) {
    auto reply = admin->call("GETMSG inbox " + inbox);
    REQUIRE(reply.rfind("OK poster", 0) == 0);
    auto dash = reply.find('-');
    auto who = std::stoi(reply.substr(9, dash - 9));
    auto seq = std::stoi(reply.substr(dash + 1));
    REQUIRE(seq == next[who]);
    ++next[who];
    REQUIRE(admin->call("DELMSG inbox " + inbox) == "OK");
  }
  CHECK(admin->call("COUNT inbox " + inbox) == "COUNTED 0");
}

TEST_CASE("a client that does not read its replies costs bounded memory and "
          "never delays others",
          "[server]") {
  smsp::server_config conf;
  conf.connections.max_unsent = 256 * 1024;
  test_server server{conf};
  auto slow = server.connect();
  auto me = register_user(*slow, "slow");
  std::string text(16 * 1024, 'x');
  REQUIRE(slow->call("MESSAGE " + text + " " + me) == "OK");
  REQUIRE(slow->call("STORE slow " + me) == "OK");
  auto rss_before = rss_kib();
  // 4000 replies of 16 KiB: 64 MiB that the client leaves unread.
  constexpr int requests = 4000;
  std::string batch;
  for (int i = 0; i < requests; ++i)
    batch += "GETMSG slow " + me + "\n";
  slow->send_raw(batch);
  std::this_thread::sleep_for(std::chrono::seconds{1});
  auto other = server.connect();
  auto started = std::chrono::steady_clock::now();
  auto o = register_user(*other, "other");
  for (int i = 0; i < 50; ++i)
    REQUIRE(other->call("COUNT other " + o) == "COUNTED 0");
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(took < std::chrono::seconds{5});
  auto growth_kib = rss_kib() - rss_before;
  INFO("RSS growth while 64 MiB of replies wait: " << growth_kib << " KiB");
  CHECK(growth_kib < 24 * 1024);
  // Once it reads, the slow client gets every reply, intact and in order.
  for (int i = 0; i < requests; ++i) {
    auto reply = slow->read_reply();
    REQUIRE(reply);
    REQUIRE(reply->size() == text.size() + 3);
  }
  CHECK(slow->call("COUNT slow " + me) == "COUNTED 1");
}

TEST_CASE("a flood of LOGINs at the real hashing cost stalls no other "
          "request",
          "[server]") {
  smsp::server_config conf;
  conf.hashing.workers = 1;
  test_server server{conf, smsp::pwhash_cost::interactive};
  auto c = server.connect();
  auto me = register_user(*c, "busy");
  // 30 hashes of 64 MiB each, one at a time: over a second of hashing.
  auto flood = server.connect();
  std::string logins;
  for (int i = 0; i < 30; ++i)
    logins += "LOGIN busy wrong\n";
  auto started = std::chrono::steady_clock::now();
  flood->send_raw(logins);
  for (int i = 0; i < 20; ++i) {
    auto sent = std::chrono::steady_clock::now();
    REQUIRE(c->call("COUNT busy " + me) == "COUNTED 0");
    CHECK(std::chrono::steady_clock::now() - sent <
          std::chrono::milliseconds{500});
  }
  for (int i = 0; i < 30; ++i)
    REQUIRE(flood->read_reply() ==
            std::string{"KO wrong username or password"});
  auto hashing = std::chrono::steady_clock::now() - started;
  INFO("30 hashes took "
       << std::chrono::duration_cast<std::chrono::milliseconds>(hashing).count()
       << " ms");
  // The COUNTs above ran while the hashes did, not after them.
  CHECK(hashing > std::chrono::milliseconds{500});
}

TEST_CASE("garbage and oversized requests get errors and lose nothing",
          "[server]") {
  test_server server;
  auto c = server.connect();
  auto me = register_user(*c, "sturdy");
  REQUIRE(c->call("MESSAGE keep me " + me) == "OK");
  // 1 MiB without a terminator, then its terminator: one error reply.
  c->send_raw(std::string(1024 * 1024, 'A'));
  c->send_raw("\n");
  CHECK(c->read_reply() == std::string{"KO request too long"});
  std::string too_long_text(16 * 1024 + 1, 't');
  CHECK(c->call("MESSAGE " + too_long_text + " " + me) ==
        "KO message text too long");
  // Random bytes: every terminator in them yields exactly one reply.
  std::mt19937 rng{42};
  std::string junk;
  for (int i = 0; i < 20000; ++i)
    junk += static_cast<char>(rng() % 256);
  junk += '\n';
  size_t frames = 0;
  for (size_t i = 0; i < junk.size(); ++i)
    if (junk[i] == '\0' || junk[i] == '\n')
      ++frames;
  c->send_raw(junk);
  c->send_raw("DUMP\n");
  // Read until the DUMP's reply; NUL- and LF-terminated replies mix.
  std::string stream;
  while (true) {
    char buf[4096];
    auto n = ::recv(c->fd(), buf, sizeof(buf), 0);
    REQUIRE(n > 0);
    stream.append(buf, static_cast<size_t>(n));
    if (stream.size() >= 3 &&
        stream.compare(stream.size() - 3, 3, "OK\n") == 0 &&
        std::count(stream.begin(), stream.end(), '\n') +
            std::count(stream.begin(), stream.end(), '\0') ==
          static_cast<long>(frames + 1))
      break;
  }
  auto replies = std::count(stream.begin(), stream.end(), '\n') +
                 std::count(stream.begin(), stream.end(), '\0');
  CHECK(replies == static_cast<long>(frames + 1));
  CHECK(c->call("STORE sturdy " + me) == "OK");
  CHECK(c->call("GETMSG sturdy " + me) == "OK keep me");
}

TEST_CASE("a client that disconnects with requests pending harms no one",
          "[server]") {
  test_server server;
  {
    auto gone = server.connect();
    auto me = register_user(*gone, "gone");
    std::string batch;
    for (int i = 0; i < 500; ++i)
      batch += "MESSAGE m" + std::to_string(i) + " " + me + "\n";
    gone->send_raw(batch);
  }
  auto c = server.connect();
  auto me = cookie_of(c->call("LOGIN gone pw-gone"));
  CHECK(c->call("MESSAGE last " + me) == "OK");
  CHECK(c->call("STORE gone " + me) == "OK");
  CHECK(c->call("GETMSG gone " + me) == "OK last");
}

TEST_CASE("a second server on a port in use fails to start", "[server]") {
  test_server first;
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  smsp::server_config conf;
  conf.port = first.srv.port;
  conf.hashing.cost = smsp::pwhash_cost::min;
  auto second = smsp::start_server(sys, conf);
  CHECK_FALSE(second);
  auto c = first.connect();
  CHECK(c->call("DUMP") == "OK");
}
