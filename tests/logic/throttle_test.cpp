// Catch2 tests of the LOGIN throttle (actors/throttle): windows, keys, CIDR.
#include <catch2/catch.hpp>

#include "actors/logic/throttle.hpp"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace smsp;
using namespace std::chrono_literals;

namespace {

using ms = std::chrono::milliseconds;
using time_point = login_throttle::time_point;

// Any fixed point works: the throttle only compares times it was given.
const time_point t0 = time_point{} + 1h;

constexpr const char* local = "127.0.0.1";
constexpr const char* attacker = "203.0.113.7";

/// One admitted attempt that fails, as the registry would report it.
void fail(login_throttle& t, const std::string& user, const std::string& addr,
          time_point now) {
  REQUIRE(t.allows(user, addr, now));
  t.failed(user, addr, now);
}

/// How long after `from` allows() first admits, polled every millisecond up
/// to `limit`; -1 ms if never. Refusals change nothing, so polling is
/// harmless; the admitted attempt is left in flight.
ms admitted_after(login_throttle& t, const std::string& user,
                  const std::string& addr, time_point from, ms limit = 20s) {
  for (ms d{0}; d <= limit; d += 1ms)
    if (t.allows(user, addr, from + d))
      return d;
  return ms{-1};
}

ip_network net(const std::string& text) {
  auto result = parse_network(text);
  REQUIRE(result);
  return *result;
}

ip_address addr(const std::string& text) {
  auto result = parse_address(text);
  REQUIRE(result);
  return *result;
}

} // namespace

namespace Catch {

template <>
struct StringMaker<ms> {
  static std::string convert(ms d) {
    return std::to_string(d.count()) + " ms";
  }
};

template <>
struct StringMaker<std::vector<ms>> {
  static std::string convert(const std::vector<ms>& ds) {
    std::string out = "{";
    for (auto d : ds)
      out += " " + std::to_string(d.count());
    return out + " } ms";
  }
};

} // namespace Catch

// -- the user dimension -------------------------------------------------------

TEST_CASE("three failures are free, the third opens a 1 s window") {
  login_throttle t{throttle_config{}};
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0 + 1ms);
  CHECK(t.allows("alice", local, t0 + 2ms));
  t.failed("alice", local, t0 + 2ms);
  CHECK_FALSE(t.allows("alice", local, t0 + 2ms));
  CHECK_FALSE(t.allows("alice", local, t0 + 1001ms));
  // Other users are untouched.
  CHECK(t.allows("bob", local, t0 + 2ms));
  CHECK(t.allows("alice", local, t0 + 1002ms));
}

TEST_CASE("windows double with each failure up to the cap: 1 2 4 8 15 15 s") {
  login_throttle t{throttle_config{}};
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", local, t0);
  std::vector<ms> windows;
  auto now = t0;
  for (int i = 0; i < 6; ++i) {
    auto w = admitted_after(t, "alice", local, now);
    windows.push_back(w);
    now += w;
    t.failed("alice", local, now);
  }
  CHECK(windows == std::vector<ms>{1s, 2s, 4s, 8s, 15s, 15s});
}

TEST_CASE("initial window and cap are configurable") {
  throttle_config cfg;
  cfg.first_penalty = 50ms;
  cfg.max_penalty = 300ms;
  cfg.free_failures = 2;
  login_throttle t{cfg};
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0);
  std::vector<ms> windows;
  auto now = t0;
  for (int i = 0; i < 5; ++i) {
    auto w = admitted_after(t, "alice", local, now);
    windows.push_back(w);
    now += w;
    t.failed("alice", local, now);
  }
  CHECK(windows == std::vector<ms>{50ms, 100ms, 200ms, 300ms, 300ms});
}

TEST_CASE("refusals inside a window neither extend it nor count") {
  login_throttle t{throttle_config{}};
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", local, t0);
  for (ms d{0}; d < 1s; d += 10ms)
    REQUIRE_FALSE(t.allows("alice", local, t0 + d));
  REQUIRE(t.allows("alice", local, t0 + 1s));
  t.failed("alice", local, t0 + 1s);
  // The fourth counted failure: 2 s, as if nobody had knocked meanwhile.
  CHECK(admitted_after(t, "alice", local, t0 + 1s) == 2s);
}

TEST_CASE("the right password gets in as soon as the window after the attack "
          "ends") {
  login_throttle t{throttle_config{}};
  auto now = t0;
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", attacker, now);
  // A long attack at the cap, from the attacker's address.
  for (int i = 0; i < 10; ++i) {
    now += admitted_after(t, "alice", attacker, now);
    t.failed("alice", attacker, now);
  }
  // The attack stops at `now`; alice, from home, waits out this window only.
  CHECK_FALSE(t.allows("alice", "198.51.100.20", now + 14999ms));
  REQUIRE(t.allows("alice", "198.51.100.20", now + 15s));
  t.succeeded("alice", "198.51.100.20", now + 15s);
  // The user's key starts over: two typos later she is still let in.
  auto later = now + 16s;
  fail(t, "alice", "198.51.100.20", later);
  fail(t, "alice", "198.51.100.20", later);
  CHECK(t.allows("alice", "198.51.100.20", later));
}

TEST_CASE("success resets the user's failures") {
  login_throttle t{throttle_config{}};
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0);
  REQUIRE(t.allows("alice", local, t0));
  t.succeeded("alice", local, t0);
  CHECK(t.tracked() == 0);
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0);
  CHECK(t.allows("alice", local, t0));
  t.failed("alice", local, t0);
  // Penalized again, from the first window.
  CHECK(admitted_after(t, "alice", local, t0) == 1s);
}

TEST_CASE("a penalized user admits one attempt per window, whatever the "
          "number of connections") {
  login_throttle t{throttle_config{}};
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", local, t0);
  auto end = t0 + 1s;
  REQUIRE(t.allows("alice", local, end));
  // The admitted attempt is being hashed: everyone else waits for it.
  CHECK_FALSE(t.allows("alice", local, end));
  CHECK_FALSE(t.allows("alice", "198.51.100.1", end + 500ms));
  SECTION("its failure opens the next window") {
    t.failed("alice", local, end + 600ms);
    CHECK(admitted_after(t, "alice", local, end + 600ms) == 2s);
  }
  SECTION("its success lets everyone in") {
    t.succeeded("alice", local, end + 600ms);
    CHECK(t.allows("alice", "198.51.100.1", end + 600ms));
    CHECK(t.allows("alice", "198.51.100.1", end + 600ms));
  }
  SECTION("a lost outcome holds the slot for one window only") {
    CHECK_FALSE(t.allows("alice", local, end + 999ms));
    CHECK(t.allows("alice", local, end + 1s));
  }
}

TEST_CASE("concurrent attempts before the first window are admitted and all "
          "their failures count") {
  login_throttle t{throttle_config{}};
  // A real client may log in on several connections at once.
  for (int i = 0; i < 10; ++i)
    REQUIRE(t.allows("alice", local, t0));
  // Ten failures come back: the 3rd opens the window, the 10th sets it to
  // 1 s * 2^7, capped at 15 s.
  for (int i = 0; i < 10; ++i)
    t.failed("alice", local, t0 + 200ms);
  CHECK(admitted_after(t, "alice", local, t0 + 200ms) == 15s);
}

TEST_CASE("a time earlier than one seen before counts as the latest") {
  login_throttle t{throttle_config{}};
  fail(t, "alice", local, t0 + 10s);
  fail(t, "alice", local, t0 + 10s);
  REQUIRE(t.allows("alice", local, t0 + 10s));
  // A stale report: the window opens at t0 + 10 s, not at t0.
  t.failed("alice", local, t0);
  CHECK_FALSE(t.allows("alice", local, t0 + 10500ms));
  CHECK(t.allows("alice", local, t0 + 11s));
}

TEST_CASE("overlong usernames share a key cut at 64 bytes") {
  login_throttle t{throttle_config{}};
  std::string stem(64, 'x');
  fail(t, stem + "1", local, t0);
  fail(t, stem + "2", local, t0);
  fail(t, stem + "3", local, t0);
  CHECK(t.tracked() == 1);
  CHECK_FALSE(t.allows(stem + "4", local, t0));
  CHECK(t.allows(std::string(63, 'x'), local, t0));
}

// -- the address dimension ----------------------------------------------------

TEST_CASE("an untrusted address is penalized for failures against many users") {
  login_throttle t{throttle_config{}};
  fail(t, "u1", attacker, t0);
  fail(t, "u2", attacker, t0);
  fail(t, "u3", attacker, t0);
  // Each user has one failure; the address has three.
  CHECK_FALSE(t.allows("carol", attacker, t0));
  CHECK_FALSE(t.allows("u1", attacker, t0 + 999ms));
  // carol from anywhere else is not concerned.
  CHECK(t.allows("carol", "198.51.100.1", t0));
  CHECK(t.allows("carol", local, t0));
  CHECK(t.allows("carol", attacker, t0 + 1s));
}

TEST_CASE("a penalized user is refused from every address, trusted or not") {
  login_throttle t{throttle_config{}};
  fail(t, "alice", "198.51.100.1", t0);
  fail(t, "alice", "198.51.100.2", t0);
  fail(t, "alice", "198.51.100.3", t0);
  CHECK_FALSE(t.allows("alice", "198.51.100.4", t0));
  CHECK_FALSE(t.allows("alice", local, t0));
  CHECK_FALSE(t.allows("alice", "::1", t0));
}

TEST_CASE("logging into one's own account does not reset the address") {
  login_throttle t{throttle_config{}};
  fail(t, "u1", attacker, t0);
  fail(t, "u2", attacker, t0);
  fail(t, "u3", attacker, t0);
  auto end = t0 + 1s;
  REQUIRE(t.allows("mallory", attacker, end));
  t.succeeded("mallory", attacker, end);
  // The success frees the address's slot: the window is over, so the next
  // attempt goes through...
  REQUIRE(t.allows("u4", attacker, end));
  t.failed("u4", attacker, end);
  // ...but its failure is the address's fourth: 2 s, not free.
  CHECK_FALSE(t.allows("u5", attacker, end));
  CHECK(admitted_after(t, "u5", attacker, end) == 2s);
}

TEST_CASE("a success during a window does not end it") {
  login_throttle t{throttle_config{}};
  // Admitted together before any window, as concurrent connections would be.
  for (auto user : {"u1", "u2", "u3", "mallory"})
    REQUIRE(t.allows(user, attacker, t0));
  t.failed("u1", attacker, t0);
  t.failed("u2", attacker, t0);
  t.failed("u3", attacker, t0);
  t.succeeded("mallory", attacker, t0 + 10ms);
  CHECK_FALSE(t.allows("u4", attacker, t0 + 10ms));
  CHECK(admitted_after(t, "u4", attacker, t0) == 1s);
}

TEST_CASE("an IPv4-mapped address is the same key as the IPv4 address") {
  login_throttle t{throttle_config{}};
  fail(t, "u1", "::ffff:203.0.113.7", t0);
  fail(t, "u2", "::ffff:203.0.113.7", t0);
  fail(t, "u3", "::FFFF:cb00:7107", t0);
  CHECK_FALSE(t.allows("u4", "203.0.113.7", t0));
  CHECK(t.allows("u4", "203.0.113.8", t0));
}

TEST_CASE("IPv6 addresses count per /64 by default") {
  SECTION("default") {
    login_throttle t{throttle_config{}};
    fail(t, "u1", "2001:db8:1:2::1", t0);
    fail(t, "u2", "2001:db8:1:2::2", t0);
    fail(t, "u3", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", t0);
    CHECK_FALSE(t.allows("u4", "2001:db8:1:2:ffff::9", t0));
    CHECK_FALSE(t.allows("u4", "[2001:db8:1:2::9]", t0));
    CHECK(t.allows("u4", "2001:db8:1:3::1", t0));
  }
  SECTION("per address with a prefix of 128") {
    throttle_config cfg;
    cfg.ipv6_prefix = 128;
    login_throttle t{cfg};
    fail(t, "u1", "2001:db8:1:2::1", t0);
    fail(t, "u2", "2001:db8:1:2::2", t0);
    fail(t, "u3", "2001:db8:1:2::3", t0);
    CHECK(t.allows("u4", "2001:db8:1:2::4", t0));
    fail(t, "u5", "2001:db8:1:2::1", t0);
    fail(t, "u6", "2001:db8:1:2::1", t0);
    CHECK_FALSE(t.allows("u4", "2001:db8:1:2::1", t0));
  }
}

TEST_CASE("text that is not an address shares one untrusted key") {
  login_throttle t{throttle_config{}};
  fail(t, "u1", "", t0);
  fail(t, "u2", "localhost", t0);
  fail(t, "u3", "no address", t0);
  CHECK_FALSE(t.allows("u4", "", t0));
  CHECK_FALSE(t.allows("u4", "garbage", t0));
  CHECK(t.allows("u4", attacker, t0));
}

TEST_CASE("trusted networks are exempt from the address dimension") {
  SECTION("the default: loopback, IPv4, IPv6 and mapped") {
    login_throttle t{throttle_config{}};
    std::vector<std::string> loopback{"127.0.0.1", "127.255.0.9", "::1",
                                      "::ffff:127.0.0.1", "[::1]"};
    int n = 0;
    for (auto& a : loopback) {
      CHECK(t.trusted(a));
      for (int i = 0; i < 20; ++i)
        fail(t, "user" + std::to_string(n++), a, t0);
      CHECK(t.allows("fresh", a, t0));
    }
    // One record per user, none for the addresses.
    CHECK(t.tracked() == static_cast<size_t>(n));
    for (auto a : {"128.0.0.1", "126.255.255.255", "::2", "::ffff:128.0.0.1",
                   "::127.0.0.1", "", "localhost"})
      CHECK_FALSE(t.trusted(a));
  }
  SECTION("a configured list replaces the default") {
    throttle_config cfg;
    cfg.trusted_networks = {"10.0.0.0/8", "2001:db8::/32"};
    login_throttle t{cfg};
    CHECK(t.trusted("10.1.2.3"));
    CHECK(t.trusted("::ffff:10.255.255.255"));
    CHECK(t.trusted("2001:db8:ffff::1"));
    CHECK_FALSE(t.trusted("2001:db9::1"));
    CHECK_FALSE(t.trusted("11.0.0.0"));
    CHECK_FALSE(t.trusted(local));
    for (int i = 0; i < 3; ++i)
      fail(t, "u" + std::to_string(i), local, t0);
    CHECK_FALSE(t.allows("u9", local, t0));
    for (int i = 3; i < 10; ++i)
      fail(t, "u" + std::to_string(i), "10.0.0.1", t0);
    CHECK(t.allows("u99", "10.0.0.1", t0));
  }
  SECTION("an empty list trusts nobody") {
    throttle_config cfg;
    cfg.trusted_networks.clear();
    login_throttle t{cfg};
    CHECK_FALSE(t.trusted(local));
    for (int i = 0; i < 3; ++i)
      fail(t, "u" + std::to_string(i), local, t0);
    CHECK_FALSE(t.allows("u9", local, t0));
  }
}

// -- memory -------------------------------------------------------------------

TEST_CASE("a flood of distinct keys stays within max_tracked per table") {
  throttle_config cfg;
  cfg.max_tracked = 1000;
  login_throttle t{cfg};
  // Penalized first, then the oldest entry of both tables.
  for (int i = 0; i < 3; ++i)
    fail(t, "early", "198.51.100.1", t0);
  REQUIRE_FALSE(t.allows("early", "198.51.100.1", t0));
  size_t most = 0;
  for (int i = 0; i < 100000; ++i) {
    auto address = "100." + std::to_string(i / 65536) + "."
                   + std::to_string(i / 256 % 256) + "."
                   + std::to_string(i % 256);
    t.failed("user" + std::to_string(i), address, t0);
    most = std::max(most, t.tracked());
  }
  CHECK(most == 2000);
  CHECK(t.tracked() == 2000);
  // The oldest keys went, penalty and all (evicting one cost the attacker
  // max_tracked hashed failures).
  CHECK(t.allows("early", "198.51.100.1", t0));
  // The newest are still there: two more failures penalize the last user.
  t.failed("user99999", local, t0);
  t.failed("user99999", local, t0);
  CHECK_FALSE(t.allows("user99999", local, t0));
}

TEST_CASE("a full table evicts the key that failed longest ago") {
  throttle_config cfg;
  cfg.max_tracked = 2;
  login_throttle t{cfg};
  fail(t, "a", local, t0);
  fail(t, "b", local, t0 + 1s);
  fail(t, "a", local, t0 + 2s);
  fail(t, "c", local, t0 + 3s); // evicts b, not a
  CHECK(t.tracked() == 2);
  fail(t, "a", local, t0 + 4s); // a's third failure
  CHECK_FALSE(t.allows("a", local, t0 + 4s));
}

TEST_CASE("windows stay within the cap for any number of failures") {
  throttle_config cfg;
  cfg.first_penalty = 1ms;
  cfg.max_penalty = 24h;
  cfg.forget_after = 24h;
  login_throttle t{cfg};
  auto now = t0;
  fail(t, "alice", local, now);
  fail(t, "alice", local, now);
  ms expected = 1ms;
  for (int i = 0; i < 100; ++i) {
    t.failed("alice", local, now);
    INFO("failure " << i + 3 << ", window " << expected.count() << " ms");
    REQUIRE_FALSE(t.allows("alice", local, now + expected - 1ms));
    REQUIRE(t.allows("alice", local, now + expected));
    now += expected;
    expected = std::min(expected * 2, ms{24h});
  }
  CHECK(expected == 24h);
}

TEST_CASE("refusals and successes never create entries") {
  login_throttle t{throttle_config{}};
  for (int i = 0; i < 1000; ++i) {
    auto user = "user" + std::to_string(i);
    REQUIRE(t.allows(user, attacker, t0));
    t.succeeded(user, attacker, t0);
  }
  CHECK(t.tracked() == 0);
}

TEST_CASE("keys are forgotten max_penalty + forget_after after their last "
          "failure") {
  throttle_config cfg;
  cfg.forget_after = 10min;
  login_throttle t{cfg};
  auto keep = 10min + 15s;
  fail(t, "alice", attacker, t0);
  fail(t, "bob", local, t0 + 1min);
  CHECK(t.tracked() == 3); // alice, bob, the attacker's address
  t.allows("x", local, t0 + keep - 1ms);
  CHECK(t.tracked() == 3);
  t.allows("x", local, t0 + keep);
  CHECK(t.tracked() == 1); // bob
  t.allows("x", local, t0 + 1min + keep);
  CHECK(t.tracked() == 0);
}

TEST_CASE("a penalty escalates until the key is forgotten, then starts over") {
  throttle_config cfg;
  cfg.forget_after = 10min;
  login_throttle t{cfg};
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", local, t0);
  // A failure after 10 quiet minutes still counts as the fourth.
  auto later = t0 + 10min;
  fail(t, "alice", local, later);
  CHECK(admitted_after(t, "alice", local, later) == 2s);
  t.failed("alice", local, later + 2s);
  CHECK(admitted_after(t, "alice", local, later + 2s) == 4s);
  // The attempt admitted 4 s later comes back 10 min 15 s after the last
  // failure: alice was forgotten meanwhile, and has three free failures again.
  auto forgotten = later + 2s + 10min + 15s;
  t.failed("alice", local, forgotten);
  fail(t, "alice", local, forgotten);
  CHECK(t.allows("alice", local, forgotten));
  t.failed("alice", local, forgotten);
  CHECK(admitted_after(t, "alice", local, forgotten) == 1s);
}

TEST_CASE("a key at the cap is never forgotten between its windows") {
  // The shortest quiet time: each failure at the end of its window still
  // meets the key, whatever the timing.
  throttle_config cfg;
  cfg.forget_after = cfg.max_penalty;
  login_throttle t{cfg};
  auto now = t0;
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", local, now);
  for (int i = 0; i < 10; ++i) {
    now += admitted_after(t, "alice", local, now);
    t.failed("alice", local, now);
  }
  CHECK(admitted_after(t, "alice", local, now) == 15s);
}

// -- configuration ------------------------------------------------------------

TEST_CASE("bad settings are rejected") {
  auto with = [](auto change) {
    throttle_config cfg;
    change(cfg);
    return cfg;
  };
  using std::invalid_argument;
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.first_penalty = 0ms; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.max_penalty = 999ms; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.free_failures = 0; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.forget_after = 14s; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) {
                    c.max_penalty = 25h;
                    c.forget_after = 25h;
                  })},
                  invalid_argument);
  CHECK_THROWS_AS(
    login_throttle{with([](auto& c) { c.forget_after = 24h * 31; })},
    invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.max_tracked = 0; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.ipv6_prefix = 129; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) {
                    c.trusted_networks = {"127.0.0.0/8", "10.0.0.0/33"};
                  })},
                  invalid_argument);
  CHECK_THROWS_WITH(
    login_throttle{with([](auto& c) { c.trusted_networks = {"garbage"}; })},
    Catch::Contains("garbage"));
  CHECK_NOTHROW(login_throttle{with([](auto& c) {
    c.first_penalty = 15s;
    c.forget_after = 15s;
  })});
}

// -- addresses and networks ---------------------------------------------------

TEST_CASE("parse_address reads IPv4 and IPv6 into one 16-byte form") {
  CHECK(addr("127.0.0.1") == addr("::ffff:127.0.0.1"));
  CHECK(addr("::1") == addr("0:0:0:0:0:0:0:1"));
  CHECK(addr("[::1]") == addr("::1"));
  CHECK(addr("fe80::1%eth0") == addr("fe80::1"));
  CHECK(addr("2001:DB8::A") == addr("2001:db8::a"));
  CHECK(addr("::1") != addr("::ffff:0.0.0.1"));
  for (auto bad :
       {"", "localhost", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ",
        " 1.2.3.4", "1.2.3.4%eth0", "::1::", "[::1", "12345::", "1.2.3.4/32"})
    CHECK_FALSE(parse_address(bad));
  // inet_pton would stop at the NUL.
  CHECK_FALSE(parse_address(std::string("1.2.3.4\0junk", 12)));
}

TEST_CASE("parse_network reads CIDR networks and bare hosts") {
  CHECK(net("10.0.0.0/8").prefix == 104);
  CHECK(net("::1/128").prefix == 128);
  CHECK(net("1.2.3.4").prefix == 128);
  CHECK(net("2001:db8::1").prefix == 128);
  CHECK(net("0.0.0.0/0").prefix == 96);
  CHECK(net("::/0").prefix == 0);
  CHECK(net("10.0.0.0/08").prefix == 104);

  auto v4 = net("192.168.4.0/22");
  CHECK(in_network(addr("192.168.4.0"), v4));
  CHECK(in_network(addr("192.168.7.255"), v4));
  CHECK(in_network(addr("::ffff:192.168.5.1"), v4));
  CHECK_FALSE(in_network(addr("192.168.8.0"), v4));
  CHECK_FALSE(in_network(addr("192.168.3.255"), v4));

  auto v6 = net("2001:db8:8000::/33");
  CHECK(in_network(addr("2001:db8:ffff::1"), v6));
  CHECK_FALSE(in_network(addr("2001:db8:7fff::1"), v6));

  // All of IPv4 is the mapped range, not all of IPv6; ::/0 is everything.
  CHECK(in_network(addr("8.8.8.8"), net("0.0.0.0/0")));
  CHECK_FALSE(in_network(addr("2001:db8::1"), net("0.0.0.0/0")));
  CHECK(in_network(addr("2001:db8::1"), net("::/0")));
  CHECK(in_network(addr("8.8.8.8"), net("::/0")));
  CHECK(in_network(addr("8.8.8.8"), net("::ffff:0:0/96")));

  CHECK(in_network(addr("1.2.3.4"), net("1.2.3.4")));
  CHECK_FALSE(in_network(addr("1.2.3.5"), net("1.2.3.4")));
  CHECK(in_network(addr("255.255.255.255"), net("255.255.255.255/32")));
  CHECK(in_network(addr("128.0.0.1"), net("128.0.0.0/1")));
  CHECK_FALSE(in_network(addr("127.255.255.255"), net("128.0.0.0/1")));

  std::vector<ip_network> nets{net("10.0.0.0/8"), net("fc00::/7")};
  CHECK(in_networks("10.9.9.9", nets));
  CHECK(in_networks("fdff::1", nets));
  CHECK_FALSE(in_networks("fe00::1", nets));
  CHECK_FALSE(in_networks("not an address", nets));
}

TEST_CASE("parse_network rejects garbage, bad lengths and host bits") {
  for (auto bad : {"",
                   "/",
                   "/8",
                   "garbage",
                   "10.0.0.0/",
                   "0.0.0.0/",
                   "::/",
                   "10.0.0.0/33",
                   "::1/129",
                   "::/1000",
                   "10.0.0.0/-1",
                   "10.0.0.0/+8",
                   "10.0.0.0/ 8",
                   "10.0.0.0/8 ",
                   "10.0.0.0/8/8",
                   "10.0.0.0/8x",
                   "10.0.0.0/0x8",
                   "10.0.0/8",
                   "256.0.0.0/8",
                   "10.0.0.1/8",
                   "2001:db8::1/32",
                   "127.0.0.1/8",
                   "fe80::%eth0/64",
                   "localhost/32",
                   "10.0.0.0\\8"})
    CHECK_FALSE(parse_network(bad));
}
