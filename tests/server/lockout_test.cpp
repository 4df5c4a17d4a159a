// Regression test over TCP: failing LOGINs from one address cannot lock out.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "app/line_client.hpp"
#include "app/options.hpp"
#include "app/server.hpp"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "tests/server/resolved.hpp"
#include "tests/test_support.hpp"

using smsp::line_client;
using namespace std::chrono_literals;

namespace {

/// A whole server in this process on 127.0.0.1 and a free port, with the
/// cheapest hash and the penalties: --login-penalty 0.2
/// --login-penalty-max 0.4 (loopback trusted, as by default).
struct lockout_server {
  smsp::testing::temp_dir data;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  smsp::server srv;

  lockout_server() {
    cfg.load<caf::io::middleman>();
    smsp::configure_actor_system(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    smsp::server_options opts;
    opts.server.data_dir = data.str();
    opts.server.port = 0;
    opts.server.hashing.cost = smsp::pwhash_cost::min;
    opts.server.registry.throttle.first_penalty = 200ms;
    opts.server.registry.throttle.max_penalty = 400ms;
    auto started = smsp::start_server(*sys, smsp::testing::resolved(opts));
    if (!started)
      FAIL("server did not start: " << sys->render(started.error()));
    srv = *started;
  }

  ~lockout_server() {
    smsp::stop_server(srv);
  }
};

/// What the attacker's thread saw; read by the test once it has joined.
struct attack_log {
  /// Replies received so far (written by the attacker only).
  std::atomic<int> replies{0};
  /// Replies other than the wrong password's.
  int unexpected = 0;
  std::string first_unexpected;
  /// Why the attack ended early, if it did.
  std::string error;
  /// Set last by the attacker's thread.
  std::atomic<bool> ended{false};
};

constexpr const char* wrong_password = "KO wrong username or password";

} // namespace

TEST_CASE("failing LOGINs from 127.0.0.2 never keep the right password out "
          "from 127.0.0.3",
          "[server][throttle]") {
  lockout_server server;
  auto port = server.srv.port;
  {
    line_client reg{"127.0.0.1", port};
    auto reply = reg.call("REGISTER victim right-pw");
    REQUIRE(reply.rfind("OK ", 0) == 0);
  }
  // The attacker: LOGIN victim wrong, as fast as the replies come, until
  // the victim is done (bounded in count all the same).
  std::atomic<bool> stop{false};
  attack_log log;
  std::thread attack{[&] {
    try {
      line_client c{"127.0.0.1", port, 10s, "127.0.0.2"};
      for (int i = 0; i < 1000000 && !stop.load(); ++i) {
        auto reply = c.call("LOGIN victim wrong");
        if (reply != wrong_password && log.unexpected++ == 0)
          log.first_unexpected = reply;
        ++log.replies;
      }
    } catch (const std::exception& ex) {
      log.error = ex.what();
    }
    log.ended = true;
  }};
  // Let the attack penalize what it can first: 3 free failures, then
  // refusals. Bounded wait on an outcome, not a timing assertion.
  for (int i = 0; i < 1000 && log.replies.load() < 10 && !log.ended.load(); ++i)
    std::this_thread::sleep_for(10ms);
  auto replies_before = log.replies.load();
  // The victim, from another address: the right password 40 times, every
  // 100 ms, each answered with a session cookie.
  int victim_in = 0;
  std::string first_refusal;
  try {
    line_client victim{"127.0.0.1", port, 10s, "127.0.0.3"};
    for (int i = 0; i < 40; ++i) {
      auto reply = victim.call("LOGIN victim right-pw");
      if (reply.size() == 35 && reply.rfind("OK ", 0) == 0)
        ++victim_in;
      else if (first_refusal.empty())
        first_refusal = reply;
      std::this_thread::sleep_for(100ms);
    }
  } catch (const std::exception& ex) {
    first_refusal = ex.what();
  }
  auto replies_during = log.replies.load() - replies_before;
  stop = true;
  attack.join();
  INFO("attacker: " << log.replies.load() << " replies, " << replies_during
                    << " while the victim logged in; error: '" << log.error
                    << "'; first refusal of the victim: '" << first_refusal
                    << "'");
  CHECK(log.error.empty());
  CHECK(replies_before >= 10);
  // The attack went on all along the victim's logins.
  CHECK(replies_during > 0);
  CHECK(log.unexpected == 0);
  CHECK(log.first_unexpected.empty());
  CHECK(victim_in == 40);
}
