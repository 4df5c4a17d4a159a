// Catch2 tests of the LOGIN throttle (actors/logic/throttle): keys, windows,
// rate bounds, memory bounds, CIDR.
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

/// A wrong password sent whenever the throttle lets it through: whether this
/// one was admitted (and reported as failed).
bool guess(login_throttle& t, const std::string& user, const std::string& addr,
           time_point now) {
  if (!t.allows(user, addr, now))
    return false;
  t.failed(user, addr, now);
  return true;
}

/// The right password: whether it was admitted (and reported as succeeded).
bool login(login_throttle& t, const std::string& user, const std::string& addr,
           time_point now) {
  if (!t.allows(user, addr, now))
    return false;
  t.succeeded(user, addr, now);
  return true;
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

/// The most elements of the sorted `times` that lie in one half-open
/// interval of length `len` starting at or after `from`.
size_t most_within(const std::vector<time_point>& times, ms len,
                   time_point from) {
  size_t most = 0;
  auto first = std::lower_bound(times.begin(), times.end(), from);
  for (auto i = first; i != times.end(); ++i) {
    auto end = std::lower_bound(i, times.end(), *i + len);
    most = std::max(most, static_cast<size_t>(end - i));
  }
  return most;
}

/// Gaps between consecutive elements of `times`.
std::vector<ms> gaps(const std::vector<time_point>& times) {
  std::vector<ms> result;
  for (size_t i = 1; i < times.size(); ++i)
    result.push_back(std::chrono::duration_cast<ms>(times[i] - times[i - 1]));
  return result;
}

/// IPv4 address number `i` of 10.0.0.0/8.
std::string nth_address(int i) {
  return "10." + std::to_string(i / 65536 % 256) + "."
         + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256);
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

// -- one address, one name: the (username, address) pair ---------------------

TEST_CASE("three failures are free, the third opens a 1 s window") {
  login_throttle t{throttle_config{}};
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0 + 1ms);
  CHECK(t.allows("alice", local, t0 + 2ms));
  t.failed("alice", local, t0 + 2ms);
  CHECK_FALSE(t.allows("alice", local, t0 + 2ms));
  CHECK_FALSE(t.allows("alice", local, t0 + 1001ms));
  // Other users from that address, and alice from any other address, are
  // untouched: the window is the pair's.
  CHECK(t.allows("bob", local, t0 + 2ms));
  CHECK(t.allows("alice", "127.0.0.2", t0 + 2ms));
  CHECK(t.allows("alice", "198.51.100.1", t0 + 2ms));
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

TEST_CASE("failures from one address never refuse the right password from "
          "another, and one shared address gets in within one window after "
          "the attack stops") {
  login_throttle t{throttle_config{}};
  const std::string home = "198.51.100.20";
  auto now = t0;
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", attacker, now);
  // A long attack at the cap, from the attacker's address. Right after each
  // of its failures alice, from home, gets in: the first time from an
  // address she had never used.
  ms w{0};
  for (int i = 0; i < 10; ++i) {
    CHECK(login(t, "alice", home, now));
    w = admitted_after(t, "alice", attacker, now);
    now += w;
    t.failed("alice", attacker, now);
  }
  CHECK(w == 15s);
  CHECK(login(t, "alice", home, now));
  // The attack stops at `now`. From the attacker's own address (a NAT they
  // share), alice waits out this window only.
  CHECK_FALSE(t.allows("alice", attacker, now + 14999ms));
  CHECK(login(t, "alice", attacker, now + 15s));
  // At home, two typos later she is still let in: the attack left nothing
  // there.
  auto later = now + 16s;
  fail(t, "alice", home, later);
  fail(t, "alice", home, later);
  CHECK(t.allows("alice", home, later));
}

TEST_CASE("success resets the pair's failures") {
  login_throttle t{throttle_config{}};
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0);
  REQUIRE(t.allows("alice", local, t0));
  t.succeeded("alice", local, t0);
  // The pair is gone; the name's two failures (from an address not yet
  // known) and the known address remain.
  CHECK(t.tracked() == 2);
  fail(t, "alice", local, t0);
  fail(t, "alice", local, t0);
  CHECK(t.allows("alice", local, t0));
  t.failed("alice", local, t0);
  // Penalized again, from the first window.
  CHECK(admitted_after(t, "alice", local, t0) == 1s);
}

TEST_CASE("a penalized pair admits one attempt per window, whatever the "
          "number of connections") {
  login_throttle t{throttle_config{}};
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", local, t0);
  auto end = t0 + 1s;
  REQUIRE(t.allows("alice", local, end));
  // The admitted attempt is being hashed: every other connection from that
  // address waits for it.
  CHECK_FALSE(t.allows("alice", local, end));
  CHECK_FALSE(t.allows("alice", local, end + 500ms));
  // Another address is another pair.
  CHECK(t.allows("alice", "198.51.100.1", end + 500ms));
  SECTION("its failure opens the next window") {
    t.failed("alice", local, end + 600ms);
    CHECK(admitted_after(t, "alice", local, end + 600ms) == 2s);
  }
  SECTION("its success lets every connection in") {
    t.succeeded("alice", local, end + 600ms);
    CHECK(t.allows("alice", local, end + 600ms));
    CHECK(t.allows("alice", local, end + 600ms));
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
  CHECK(t.tracked() == 2); // one pair, one name
  CHECK_FALSE(t.allows(stem + "4", local, t0));
  CHECK(t.allows(std::string(63, 'x'), local, t0));
}

// -- the lock-out of issue 8 --------------------------------------------------

namespace {

struct lockout_run {
  int victim_tries = 0;
  int victim_in = 0;
  /// When the attacker's guesses were admitted.
  std::vector<time_point> guesses;
};

/// The issue's scenario in simulated time: from `attacker_addr`, "LOGIN
/// victim wrong" whenever the throttle lets it through (asked every
/// millisecond); from `victim_addr`, the right password every 100 ms, from
/// `head_start` after the attack began, for `duration`.
lockout_run run_lockout(login_throttle& t, const std::string& attacker_addr,
                        const std::string& victim_addr, ms head_start,
                        ms duration) {
  lockout_run run;
  for (ms d{0}; d < head_start + duration; d += 1ms) {
    auto now = t0 + d;
    if (guess(t, "victim", attacker_addr, now))
      run.guesses.push_back(now);
    if (d >= head_start && (d - head_start) % 100ms == 0ms) {
      ++run.victim_tries;
      if (login(t, "victim", victim_addr, now))
        ++run.victim_in;
    }
  }
  return run;
}

/// --login-penalty 0.2 --login-penalty-max 0.4, as in the issue.
throttle_config issue_config() {
  throttle_config cfg;
  cfg.first_penalty = 200ms;
  cfg.max_penalty = 400ms;
  return cfg;
}

/// The attacker's guesses: 3 free, then one per window (200 ms, then 400 ms).
void check_bounded(const lockout_run& run) {
  auto g = gaps(run.guesses);
  REQUIRE(g.size() > 3);
  CHECK(g[2] == 200ms);
  CHECK(std::all_of(g.begin() + 3, g.end(), [](ms x) { return x == 400ms; }));
}

} // namespace

TEST_CASE("the issue's lock-out: failing from 127.0.0.2 never keeps the right "
          "password out from 127.0.0.3") {
  // Under the per-username key, this let the victim in once in 40 tries.
  login_throttle t{issue_config()};
  // The attack runs alone for a minute, then the victim logs in every 100 ms
  // for a minute, starting from an address never seen before.
  auto run = run_lockout(t, "127.0.0.2", "127.0.0.3", 1min, 1min);
  CHECK(run.victim_tries == 600);
  CHECK(run.victim_in == 600);
  check_bounded(run);
}

TEST_CASE("the lock-out cannot happen whatever the trust of either address") {
  auto cfg = issue_config();
  std::string attacker_addr;
  std::string victim_addr;
  SECTION("nothing trusted: the attacker's address is penalized too") {
    cfg.trusted_networks.clear();
    attacker_addr = "127.0.0.2";
    victim_addr = "127.0.0.3";
  }
  SECTION("both untrusted") {
    attacker_addr = attacker;
    victim_addr = "198.51.100.20";
  }
  SECTION("the attacker trusted, the victim not") {
    cfg.trusted_networks = {"10.0.0.0/8"};
    attacker_addr = "10.1.2.3";
    victim_addr = "198.51.100.20";
  }
  SECTION("the victim trusted, the attacker not") {
    cfg.trusted_networks = {"10.0.0.0/8"};
    attacker_addr = attacker;
    victim_addr = "10.1.2.3";
  }
  SECTION("IPv6, two /64s of one /48") {
    attacker_addr = "2001:db8:1:1::7";
    victim_addr = "2001:db8:1:2::9";
  }
  login_throttle t{cfg};
  auto run = run_lockout(t, attacker_addr, victim_addr, 1min, 1min);
  CHECK(run.victim_in == run.victim_tries);
  CHECK(run.victim_tries == 600);
  check_bounded(run);
}

// -- one address, many names: the address ----------------------------------

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

TEST_CASE("trusted networks are exempt from the per-address key") {
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
    // One pair and one name per user, no address.
    CHECK(t.tracked() == 2 * static_cast<size_t>(n));
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

// -- many addresses, one name: the username-wide key -------------------------

TEST_CASE("a name that failed from three addresses is refused from every new "
          "address, trusted or not, but not from a known one") {
  login_throttle t{throttle_config{}};
  REQUIRE(login(t, "alice", "198.51.100.50", t0));
  fail(t, "alice", "198.51.100.1", t0);
  fail(t, "alice", "198.51.100.2", t0);
  fail(t, "alice", "198.51.100.3", t0);
  CHECK_FALSE(t.allows("alice", "198.51.100.4", t0));
  CHECK_FALSE(t.allows("alice", local, t0));
  CHECK_FALSE(t.allows("alice", "::1", t0));
  CHECK(t.allows("alice", "198.51.100.50", t0));
  CHECK(t.allows("bob", "198.51.100.4", t0));
  // Two addresses are not a spread guess.
  fail(t, "bob", "198.51.100.1", t0);
  fail(t, "bob", "198.51.100.2", t0);
  CHECK(t.allows("bob", "198.51.100.5", t0));
}

TEST_CASE("one IPv6 /64 is one address for the username-wide key") {
  login_throttle t{throttle_config{}};
  SECTION("hosts of one /64 are one pair: never a spread guess") {
    fail(t, "alice", "2001:db8:1:2::1", t0);
    fail(t, "alice", "2001:db8:1:2::2", t0);
    fail(t, "alice", "2001:db8:1:2::3", t0);
    CHECK_FALSE(t.allows("alice", "2001:db8:1:2::4", t0));
    CHECK(t.allows("alice", "198.51.100.1", t0));
  }
  SECTION("three /64s of one /48 are a spread guess") {
    fail(t, "alice", "2001:db8:1:1::1", t0);
    fail(t, "alice", "2001:db8:1:2::1", t0);
    fail(t, "alice", "2001:db8:1:3::1", t0);
    CHECK_FALSE(t.allows("alice", "198.51.100.1", t0));
  }
}

TEST_CASE("many addresses guessing one name get at most two attempts per "
          "window between them") {
  throttle_config cfg;
  std::vector<time_point> admitted;
  int addresses = 0;
  auto until = t0 + 10min;
  SECTION("fifty addresses, each retrying as soon as it is let in") {
    login_throttle t{cfg};
    addresses = 50;
    for (auto now = t0; now < until; now += 100ms)
      for (int i = 0; i < addresses; ++i)
        if (guess(t, "alice", nth_address(i), now))
          admitted.push_back(now);
  }
  SECTION("fifty trusted addresses") {
    cfg.trusted_networks = {"10.0.0.0/8"};
    login_throttle t{cfg};
    addresses = 50;
    for (auto now = t0; now < until; now += 100ms)
      for (int i = 0; i < addresses; ++i)
        if (guess(t, "alice", nth_address(i), now))
          admitted.push_back(now);
  }
  SECTION("a fresh address for every guess") {
    login_throttle t{cfg};
    for (auto now = t0; now < until; now += 100ms)
      if (guess(t, "alice", nth_address(addresses), now)) {
        admitted.push_back(now);
        ++addresses;
      }
  }
  INFO(admitted.size() << " guesses admitted from " << addresses
                       << " addresses");
  // Once both lanes are at the cap (15 s): one attempt per window from the
  // addresses that failed before, one from the others.
  CHECK(most_within(admitted, 15s, t0 + 1min) <= 2);
  // In all, per lane: 3 free failures, the windows of 1, 2, 4 and 8 s, then
  // one per 15 s; plus the free failures of the first two addresses, before
  // the key applied. Fifty addresses bounded each alone would have had
  // more than 2000.
  size_t per_lane = 3 + 4 + 10min / 15s + 1;
  CHECK(admitted.size() <= 2 * per_lane + 2 * 3);
}

TEST_CASE("during a spread guess a known address is never refused and a new "
          "one waits at most one window") {
  throttle_config cfg;
  login_throttle t{cfg};
  const std::string home = "198.51.100.20";
  const std::string hotel = "192.0.2.80";
  REQUIRE(login(t, "alice", home, t0));
  std::vector<std::string> bots;
  for (int i = 0; i < 5; ++i)
    bots.push_back(nth_address(i));
  // Every step the bots guess first, as fast as they are let in, then alice
  // logs in: the worst order for her.
  int home_tries = 0;
  int home_in = 0;
  auto step = [&](time_point now) {
    for (auto& bot : bots)
      guess(t, "alice", bot, now);
    ++home_tries;
    home_in += login(t, "alice", home, now) ? 1 : 0;
  };
  auto now = t0;
  for (; now < t0 + 5min; now += 100ms)
    step(now);
  // A sixth address joins: it takes the slot of addresses new to alice's
  // name, and its failure opens that lane's next window.
  bots.push_back(nth_address(5));
  step(now);
  CHECK_FALSE(t.allows("alice", hotel, now));
  // From the hotel, a new address, alice waits at most one window while the
  // six keep guessing (they have all failed for her name before).
  auto asked = now;
  bool in = false;
  while (!in && now < asked + 1min) {
    now += 100ms;
    step(now);
    in = login(t, "alice", hotel, now);
  }
  REQUIRE(in);
  CHECK(now - asked <= cfg.max_penalty);
  // Now the hotel is known too: every LOGIN from it gets in.
  int hotel_tries = 0;
  int hotel_in = 0;
  for (auto end = now + 1min; now < end;) {
    now += 100ms;
    step(now);
    ++hotel_tries;
    hotel_in += login(t, "alice", hotel, now) ? 1 : 0;
  }
  CHECK(hotel_in == hotel_tries);
  // A fleet that spends a fresh address on every guess competes with a new
  // address for one attempt per window; once it stops, a new address waits
  // at most one window.
  for (int next = 100; now < asked + 10min; now += 100ms)
    if (guess(t, "alice", nth_address(next), now))
      ++next;
  CHECK_FALSE(t.allows("alice", "192.0.2.81", now));
  CHECK(admitted_after(t, "alice", "192.0.2.81", now) <= cfg.max_penalty);
  CHECK(home_in == home_tries);
  CHECK(home_tries > 3000);
}

TEST_CASE("the username-wide key holds each lane for the attempt in flight") {
  login_throttle t{throttle_config{}};
  // Three addresses, one failure each: the lane of new addresses is
  // penalized (three failures), the lane of repeat ones has none yet.
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", nth_address(i), t0);
  CHECK_FALSE(t.allows("alice", nth_address(10), t0 + 999ms));
  CHECK(t.allows("alice", nth_address(0), t0 + 999ms));
  auto end = t0 + 1s;
  REQUIRE(t.allows("alice", nth_address(10), end));
  CHECK_FALSE(t.allows("alice", nth_address(11), end + 500ms));
  SECTION("its failure opens the lane's next window") {
    t.failed("alice", nth_address(10), end + 600ms);
    CHECK(admitted_after(t, "alice", nth_address(11), end + 600ms) == 2s);
  }
  SECTION("its success frees the slot") {
    t.succeeded("alice", nth_address(10), end + 600ms);
    CHECK(t.allows("alice", nth_address(11), end + 600ms));
  }
  SECTION("a lost outcome holds it for one window only") {
    CHECK_FALSE(t.allows("alice", nth_address(11), end + 999ms));
    CHECK(t.allows("alice", nth_address(11), end + 1s));
  }
}

TEST_CASE("failures from known addresses are no spread guess") {
  login_throttle t{throttle_config{}};
  std::vector<std::string> mine{"198.51.100.1", "198.51.100.2", "198.51.100.3"};
  for (auto& a : mine)
    REQUIRE(login(t, "alice", a, t0));
  // Alice mistyping twice from each of her three addresses.
  for (auto& a : mine) {
    fail(t, "alice", a, t0 + 1s);
    fail(t, "alice", a, t0 + 1s);
  }
  CHECK(t.allows("alice", "192.0.2.1", t0 + 1s));
  // Each pair still counts: a third failure opens that address's window.
  fail(t, "alice", mine[0], t0 + 1s);
  CHECK_FALSE(t.allows("alice", mine[0], t0 + 1s));
  CHECK(t.allows("alice", mine[1], t0 + 1s));
}

TEST_CASE("a name knows at most known_addresses, each for known_for after "
          "its last success") {
  throttle_config cfg;
  cfg.known_addresses = 2;
  cfg.known_for = 1h;
  login_throttle t{cfg};
  auto spread_guess = [&](time_point now) {
    for (int i = 0; i < 3; ++i)
      fail(t, "alice", nth_address(i), now);
  };
  REQUIRE(login(t, "alice", "198.51.100.1", t0));
  REQUIRE(login(t, "alice", "198.51.100.2", t0 + 1s));
  // The third pushes out the one whose last success is oldest.
  REQUIRE(login(t, "alice", "198.51.100.3", t0 + 2s));
  spread_guess(t0 + 3s);
  CHECK_FALSE(t.allows("alice", "198.51.100.1", t0 + 3s));
  CHECK(t.allows("alice", "198.51.100.2", t0 + 3s));
  CHECK(t.allows("alice", "198.51.100.3", t0 + 3s));
  // An hour after its last success an address is new again.
  auto later = t0 + 1h + 1s;
  spread_guess(later);
  CHECK_FALSE(t.allows("alice", "198.51.100.2", later));
  CHECK(t.allows("alice", "198.51.100.3", later));
  SECTION("none when known_addresses is 0") {
    cfg.known_addresses = 0;
    login_throttle none{cfg};
    REQUIRE(login(none, "alice", "198.51.100.1", t0));
    for (int i = 0; i < 3; ++i)
      fail(none, "alice", nth_address(i), t0);
    CHECK_FALSE(none.allows("alice", "198.51.100.1", t0));
    // Three addresses, three pairs, one name; no known address.
    CHECK(none.tracked() == 7);
  }
}

// -- rate bounds per address --------------------------------------------------

TEST_CASE("one address gets 3 guesses, then one per window: at one name, or "
          "at any names if untrusted") {
  throttle_config cfg;
  login_throttle t{cfg};
  std::vector<time_point> admitted;
  auto until = t0 + 10min;
  SECTION("a trusted address, one name") {
    for (auto now = t0; now < until; now += 10ms)
      if (guess(t, "alice", local, now))
        admitted.push_back(now);
  }
  SECTION("an untrusted address, one name") {
    for (auto now = t0; now < until; now += 10ms)
      if (guess(t, "alice", attacker, now))
        admitted.push_back(now);
  }
  SECTION("an untrusted address, a new name for every guess") {
    for (auto now = t0; now < until; now += 10ms)
      if (guess(t, "u" + std::to_string(admitted.size()), attacker, now))
        admitted.push_back(now);
  }
  // Asked every 10 ms: 3 at once, then the windows.
  auto expected = std::vector<ms>{10ms, 10ms, 1s, 2s, 4s, 8s};
  expected.resize(gaps(admitted).size(), 15s);
  CHECK(gaps(admitted) == expected);
  // At 0, 10 and 20 ms, 1.02, 3.02, 7.02 and 15.02 s, then every 15 s up to
  // 585.02 s.
  CHECK(admitted.size() == 3 + 4 + 38);
}

// -- memory -------------------------------------------------------------------

TEST_CASE("a flood of distinct keys stays within max_tracked per table") {
  throttle_config cfg;
  cfg.max_tracked = 1000;
  login_throttle t{cfg};
  // Penalized first, then the oldest entry of every table.
  for (int i = 0; i < 3; ++i)
    fail(t, "early", "198.51.100.1", t0);
  REQUIRE_FALSE(t.allows("early", "198.51.100.1", t0));
  size_t most = 0;
  std::string last;
  for (int i = 0; i < 100000; ++i) {
    last = nth_address(i);
    t.failed("user" + std::to_string(i), last, t0);
    most = std::max(most, t.tracked());
  }
  // 1000 addresses, 1000 pairs, 1000 names.
  CHECK(most == 3000);
  CHECK(t.tracked() == 3000);
  // The oldest keys went, penalty and all (evicting one cost the attacker
  // max_tracked hashed failures).
  CHECK(t.allows("early", "198.51.100.1", t0));
  // The newest are still there: two more failures penalize the last pair.
  t.failed("user99999", last, t0);
  t.failed("user99999", last, t0);
  CHECK_FALSE(t.allows("user99999", last, t0));
}

TEST_CASE("a flood of successes stays within max_tracked known names, and "
          "known_addresses per name") {
  throttle_config cfg;
  cfg.max_tracked = 1000;
  login_throttle t{cfg};
  for (int i = 0; i < 100000; ++i)
    REQUIRE(login(t, "user" + std::to_string(i), attacker, t0));
  CHECK(t.tracked() == 1000);
  // One name logging in from 1000 addresses keeps the latest
  // known_addresses (4).
  for (int i = 0; i < 1000; ++i)
    REQUIRE(login(t, "alice", nth_address(i), t0));
  CHECK(t.tracked() == 1000);
  for (int i = 0; i < 3; ++i)
    fail(t, "alice", "198.51.100." + std::to_string(i + 1), t0);
  CHECK_FALSE(t.allows("alice", nth_address(995), t0));
  for (int i = 996; i < 1000; ++i)
    CHECK(t.allows("alice", nth_address(i), t0));
}

TEST_CASE("a full table evicts the key that failed longest ago") {
  throttle_config cfg;
  cfg.max_tracked = 2;
  login_throttle t{cfg};
  fail(t, "a", local, t0);
  fail(t, "b", local, t0 + 1s);
  fail(t, "a", local, t0 + 2s);
  fail(t, "c", local, t0 + 3s); // evicts b, not a
  CHECK(t.tracked() == 4);      // two pairs, two names
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

TEST_CASE("refusals never create entries, and a success only its name's "
          "known address") {
  login_throttle t{throttle_config{}};
  fail(t, "u1", attacker, t0);
  fail(t, "u2", attacker, t0);
  fail(t, "u3", attacker, t0);
  // One address, three pairs, three names.
  REQUIRE(t.tracked() == 7);
  for (int i = 0; i < 1000; ++i)
    REQUIRE_FALSE(t.allows("user" + std::to_string(i), attacker, t0));
  CHECK(t.tracked() == 7);
  for (int i = 0; i < 1000; ++i)
    REQUIRE(login(t, "user" + std::to_string(i), "198.51.100.1", t0));
  CHECK(t.tracked() == 7 + 1000);
}

TEST_CASE("keys are forgotten max_penalty + forget_after after their last "
          "failure") {
  throttle_config cfg;
  cfg.forget_after = 10min;
  login_throttle t{cfg};
  auto keep = 10min + 15s;
  fail(t, "alice", attacker, t0);
  fail(t, "bob", local, t0 + 1min);
  // alice's pair and name and the attacker's address; bob's pair and name.
  CHECK(t.tracked() == 5);
  t.allows("x", local, t0 + keep - 1ms);
  CHECK(t.tracked() == 5);
  t.allows("x", local, t0 + keep);
  CHECK(t.tracked() == 2); // bob's
  t.allows("x", local, t0 + 1min + keep);
  CHECK(t.tracked() == 0);
}

TEST_CASE("known addresses are forgotten known_for after their last success") {
  throttle_config cfg;
  cfg.known_for = 1h;
  login_throttle t{cfg};
  REQUIRE(login(t, "alice", local, t0));
  REQUIRE(login(t, "alice", local, t0 + 10min));
  CHECK(t.tracked() == 1);
  t.allows("x", local, t0 + 1h + 10min - 1ms);
  CHECK(t.tracked() == 1);
  t.allows("x", local, t0 + 1h + 10min);
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
  CHECK_THROWS_AS(
    login_throttle{with([](auto& c) { c.distributed_addresses = 1; })},
    invalid_argument);
  CHECK_THROWS_AS(
    login_throttle{with([](auto& c) { c.distributed_addresses = 65; })},
    invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.known_addresses = 65; })},
                  invalid_argument);
  CHECK_THROWS_AS(login_throttle{with([](auto& c) { c.known_for = 0ms; })},
                  invalid_argument);
  CHECK_THROWS_AS(
    login_throttle{with([](auto& c) { c.known_for = 24h * 367; })},
    invalid_argument);
  CHECK_THROWS_WITH(
    login_throttle{with([](auto& c) { c.trusted_networks = {"garbage"}; })},
    Catch::Contains("garbage"));
  CHECK_NOTHROW(login_throttle{with([](auto& c) {
    c.first_penalty = 15s;
    c.forget_after = 15s;
  })});
  CHECK_NOTHROW(login_throttle{with([](auto& c) {
    c.distributed_addresses = 2;
    c.known_addresses = 0;
    c.known_for = 1ms;
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

TEST_CASE("penalty() reports the failures and the window the log shows",
          "[throttle]") {
  login_throttle t{throttle_config{}};
  // Free failures open no window.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(t.allows("bob", attacker, t0));
    auto after = t.failed("bob", attacker, t0);
    CHECK(after.failures == static_cast<unsigned>(i + 1));
    CHECK(after.left == ms{0});
    CHECK(std::string(after.key).empty());
  }
  // The third uses them up: a 1 s window, on the address (untrusted) and on
  // the pair alike; the address key is named first among equals.
  REQUIRE(t.allows("bob", attacker, t0));
  auto third = t.failed("bob", attacker, t0);
  CHECK(third.failures == 3);
  CHECK(third.left == 1000ms);
  CHECK(std::string(third.key) == "address");
  // Another name from that address is held by the address key only.
  auto other = t.penalty("carol", attacker, t0 + 400ms);
  CHECK(other.failures == 0);
  CHECK(other.left == 600ms);
  CHECK(std::string(other.key) == "address");
  // The state counts down and ends; asking changes nothing.
  CHECK(t.penalty("bob", attacker, t0 + 400ms).left == 600ms);
  CHECK(t.penalty("bob", attacker, t0 + 400ms).left == 600ms);
  CHECK(t.penalty("bob", attacker, t0 + 1000ms).left == ms{0});
  CHECK(t.penalty("bob", attacker, t0 + 1000ms).failures == 3);
  // A trusted address has no address key: the pair holds the window.
  // (Time never goes back for the throttle: later times from here on.)
  auto t1 = t0 + 2s;
  for (int i = 0; i < 3; ++i)
    fail(t, "dave", local, t1);
  auto pair = t.penalty("dave", local, t1 + 1ms);
  CHECK(pair.left == 999ms);
  CHECK(std::string(pair.key) == "user+address");
  CHECK(t.penalty("erin", local, t1 + 1ms).left == ms{0});
}
