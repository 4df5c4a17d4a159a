// Catch2 tests of mailbox placement (actors/logic/placement).
#include <catch2/catch.hpp>

#include "actors/logic/placement.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/test_support.hpp"

using namespace smsp;

namespace {

node_address addr(const std::string& text) {
  std::string why;
  auto result = parse_node_address(text, &why);
  INFO(why);
  REQUIRE(result);
  return *result;
}

std::vector<node_address> addrs(const std::vector<std::string>& texts) {
  std::vector<node_address> result;
  for (auto& text : texts)
    result.push_back(addr(text));
  return result;
}

/// Names like real usernames (letters and digits), many of them.
std::vector<std::string> synthetic_users(size_t n) {
  std::vector<std::string> result;
  for (size_t i = 0; i < n; ++i)
    result.push_back("user" + std::to_string(i));
  return result;
}

/// Why parse_node_address refused `text`; fails the test if it accepted it.
std::string refusal(const std::string& text) {
  std::string why;
  auto result = parse_node_address(text, &why);
  CHECK_FALSE(result);
  return why;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out{path, std::ios::binary};
  out << text;
  REQUIRE(out.good());
}

} // namespace

TEST_CASE("node addresses parse as host:port or [ipv6]:port", "[placement]") {
  auto a = addr("node1.example:5000");
  CHECK(a.host == "node1.example");
  CHECK(a.port == 5000);
  CHECK(to_string(a) == "node1.example:5000");
  CHECK(addr("10.0.0.7:1").port == 1);
  CHECK(addr("10.0.0.7:65535").port == 65535);
  auto v6 = addr("[2001:db8::1]:7000");
  CHECK(v6.host == "2001:db8::1");
  CHECK(v6.port == 7000);
  CHECK(to_string(v6) == "[2001:db8::1]:7000");
  CHECK(to_string(addr("[fe80::1%eth0]:7000")) == "[fe80::1%eth0]:7000");
  // Host names and IPv6 hex digits are case-insensitive: one node, one
  // spelling.
  CHECK(addr("Node1.EXAMPLE:5000") == addr("node1.example:5000"));
  CHECK(to_string(addr("[2001:DB8::1]:7000")) == "[2001:db8::1]:7000");
  CHECK(addr("a:5000") != addr("a:5001"));
  CHECK(addr("a:5000") != addr("b:5000"));
  // to_string is what parse reads back.
  for (auto text : {"a:1", "[::1]:2", "host-x.example.org:65535"})
    CHECK(to_string(addr(text)) == text);
}

TEST_CASE("bad node addresses are refused naming the text", "[placement]") {
  for (auto text : {"a:0", "a:65536", "a:+1", "a:", "a:-1", "a: 1", "a:1 ",
                    "a:1x", "a:0x10", "a:999999", "a:100000"}) {
    INFO(text);
    auto why = refusal(text);
    CHECK(why.find(std::string{"'"} + text + "'") != std::string::npos);
    CHECK(why.find("port") != std::string::npos);
  }
  // Bad hosts.
  for (auto text : {":5000", " a:5000", "a b:5000", "a\t:5000", "a#b:5000",
                    "a/b:5000", "[]:5000", "[a]:5000"}) {
    INFO(text);
    refusal(text);
  }
  CHECK(refusal(std::string(256, 'h') + ":1").find("255") != std::string::npos);
  CHECK(parse_node_address(std::string(255, 'h') + ":1"));
  // Control characters are shown escaped, not written raw.
  CHECK(refusal(std::string{"a\x01:5"}).find("\\x01") != std::string::npos);
  CHECK(refusal(std::string{"a\0b:5", 5}).find("\\x00") != std::string::npos);
  // Missing colon.
  CHECK(refusal("node1").find("no ':port'") != std::string::npos);
  CHECK(refusal("").find("no ':port'") != std::string::npos);
  // IPv6 must be bracketed, brackets must be closed and followed by a port.
  CHECK(refusal("::1:5000").find("brackets") != std::string::npos);
  CHECK(refusal("2001:db8::1").find("brackets") != std::string::npos);
  refusal("[::1");
  refusal("[::1]");
  refusal("[::1]5000");
  refusal("[::1]:");
  refusal("[::1]:0");
  refusal("[[::1]:5000");
  // `why` is optional.
  CHECK_FALSE(parse_node_address("nope"));
}

TEST_CASE("a node list with an address twice is refused", "[placement]") {
  CHECK_FALSE(check_node_list({}));
  CHECK_FALSE(check_node_list(addrs({"a:1", "a:2", "b:1"})));
  auto why = check_node_list(addrs({"a:1", "b:1", "A:1"}));
  REQUIRE(why);
  CHECK(why->find("a:1") != std::string::npos);
}

TEST_CASE("placement weights are the documented hash", "[placement]") {
  // Computed independently (Python) from the definition in placement.hpp:
  // splitmix64's finalizer over FNV-1a 64 of "node\0user". If these change,
  // every deployed user moves: change them only with a migration.
  CHECK(placement_weight(addr("node1:5000"), "alice") == 0x01f41565a1c6719bULL);
  CHECK(placement_weight(addr("[::1]:7000"), "bob") == 0xa7612105dc24370fULL);
  CHECK(placement_weight(addr("a:1"), "") == 0x26a5ac253384e0d2ULL);
  auto nodes = addrs({"node1:5000", "node2:5000", "node3:5000"});
  CHECK(rendezvous_place("alice", nodes) == 1);
  CHECK(rendezvous_place("bob", nodes) == 0);
  CHECK(rendezvous_place("carol", nodes) == 1);
  CHECK(rendezvous_place("dave", nodes) == 0);
}

TEST_CASE("rendezvous placement", "[placement]") {
  auto users = synthetic_users(10000);

  SECTION("one node takes everyone") {
    auto one = addrs({"solo:5000"});
    for (auto& user : users)
      REQUIRE(rendezvous_place(user, one) == 0);
  }

  SECTION("no nodes is the caller's case, not a placement") {
    CHECK_THROWS_AS(rendezvous_place("alice", {}), std::invalid_argument);
  }

  SECTION("two nodes share users about evenly") {
    auto two = addrs({"node1:5000", "node2:5000"});
    size_t first = 0;
    for (auto& user : users)
      if (rendezvous_place(user, two) == 0)
        ++first;
    INFO("on node 1: " << first << " of " << users.size());
    CHECK(first >= 4500);
    CHECK(first <= 5500);
  }

  SECTION("the order of the nodes does not change placement") {
    auto nodes = addrs({"node1:5000", "node2:5000", "node3:5000",
                        "10.0.0.4:5000", "[2001:db8::5]:5000"});
    auto shuffled = nodes;
    std::mt19937 rng{42};
    for (int round = 0; round < 5; ++round) {
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      for (auto& user : users)
        REQUIRE(nodes[rendezvous_place(user, nodes)]
                == shuffled[rendezvous_place(user, shuffled)]);
    }
    auto reversed = nodes;
    std::reverse(reversed.begin(), reversed.end());
    CHECK(compare_placement(users, nodes, reversed).moved == 0);
  }

  SECTION("adding a node moves about 1/(n+1) of users, all to it") {
    auto two = addrs({"node1:5000", "node2:5000"});
    auto three = addrs({"node1:5000", "node2:5000", "node3:5000"});
    size_t moved = 0;
    for (auto& user : users) {
      auto before = two[rendezvous_place(user, two)];
      auto after = three[rendezvous_place(user, three)];
      if (before != after) {
        ++moved;
        REQUIRE(after == three[2]);
      }
    }
    INFO("moved: " << moved << " of " << users.size());
    CHECK(moved >= 2500);
    CHECK(moved <= 4200);
    CHECK(compare_placement(users, two, three).moved == moved);
  }

  SECTION("removing a node moves only its own users") {
    auto three = addrs({"node1:5000", "node2:5000", "node3:5000"});
    auto without_2 = addrs({"node1:5000", "node3:5000"});
    size_t on_2 = 0;
    for (auto& user : users) {
      auto before = three[rendezvous_place(user, three)];
      auto after = without_2[rendezvous_place(user, without_2)];
      if (before == three[1])
        ++on_2;
      else
        REQUIRE(before == after);
    }
    CHECK(compare_placement(users, three, without_2).moved == on_2);
  }
}

TEST_CASE("compare_placement counts movers and names the first ones",
          "[placement]") {
  auto users = synthetic_users(1000);
  auto two = addrs({"node1:5000", "node2:5000"});
  auto other = addrs({"node1:5000", "node9:5000"});

  SECTION("the same list moves no one") {
    auto change = compare_placement(users, two, two);
    CHECK(change.moved == 0);
    CHECK(change.first.empty());
    CHECK(compare_placement(users, {}, {}).moved == 0);
  }

  SECTION("from the front to nodes, or back, moves everyone") {
    auto out = compare_placement(users, {}, two);
    CHECK(out.moved == users.size());
    CHECK(
      out.first
      == std::vector<std::string>{"user0", "user1", "user2", "user3", "user4"});
    auto back = compare_placement(users, two, {}, 2);
    CHECK(back.moved == users.size());
    CHECK(back.first == std::vector<std::string>{"user0", "user1"});
  }

  SECTION("replacing a node moves its users and some of the others") {
    // node9 takes the users of node2, and those of node1's users whose
    // weight for node9 beats node1.
    std::vector<std::string> expected;
    uint64_t moved = 0;
    uint64_t on_node2 = 0;
    for (auto& user : users) {
      auto before = two[rendezvous_place(user, two)];
      if (before == two[1])
        ++on_node2;
      if (before != other[rendezvous_place(user, other)]) {
        ++moved;
        if (expected.size() < 3)
          expected.push_back(user);
      }
    }
    auto change = compare_placement(users, two, other, 3);
    CHECK(change.moved == moved);
    CHECK(change.moved > on_node2);
    CHECK(change.moved < users.size());
    CHECK(change.first == expected);
    CHECK(compare_placement(users, two, other, 0).first.empty());
  }
}

TEST_CASE("the refusal names the file, the lists, the counts and the users",
          "[placement]") {
  auto before = addrs({"a:1", "b:1"});
  auto after = addrs({"a:1", "c:1"});
  placement_change change;
  change.moved = 1234;
  change.first = {"alice", "bob", "carol"};
  auto text = describe_node_change("/data/mailbox-nodes", before, after, change,
                                   5000);
  CHECK(text
        == "the mailbox nodes differ from the ones recorded in "
           "/data/mailbox-nodes (recorded: a:1, b:1; given: a:1, c:1): 1234 "
           "of 5000 users would move to another node, e.g. alice, bob, carol; "
           "their mail would not follow them (see OPERATIONS.md, 'Changing "
           "the node list'); start with --accept-node-change to accept this");

  SECTION("an empty list is the front") {
    placement_change all{2, {"alice", "bob"}};
    auto from_front = describe_node_change("f", {}, after, all, 2);
    CHECK(from_front.find("recorded: none, all mailboxes in the front; given: "
                          "a:1, c:1")
          != std::string::npos);
    // Every mover named: a list, not an example.
    CHECK(from_front.find("2 of 2 users would move to another node: alice, "
                          "bob;")
          != std::string::npos);
  }

  SECTION("one user") {
    placement_change one{1, {"alice"}};
    CHECK(describe_node_change("f", before, after, one, 1)
            .find("1 of 1 user would move to another node: alice;")
          != std::string::npos);
  }

  SECTION("built from a real comparison") {
    auto users = synthetic_users(100);
    auto real = compare_placement(users, before, after);
    auto msg = describe_node_change("f", before, after, real, users.size());
    CHECK(msg.find(std::to_string(real.moved) + " of 100 users")
          != std::string::npos);
    for (auto& name : real.first)
      CHECK(msg.find(name) != std::string::npos);
  }
}

TEST_CASE("the node list file", "[placement]") {
  testing::temp_dir dir{"smsp-placement"};
  std::filesystem::create_directories(dir.path);
  auto file = dir.path / node_list_file;

  SECTION("a data dir without one has none") {
    CHECK_FALSE(load_node_list(dir.str()));
  }

  SECTION("save and load round-trip") {
    auto nodes = addrs({"node1:5000", "[2001:db8::1]:7000", "10.0.0.3:1"});
    save_node_list(dir.str(), nodes);
    auto loaded = load_node_list(dir.str());
    REQUIRE(loaded);
    CHECK(*loaded == nodes);
    // A comment first, saying what the file is; no temp file left behind.
    std::ifstream in{file};
    std::string first;
    std::getline(in, first);
    CHECK(first.rfind("# smsp-actors mailbox nodes", 0) == 0);
    CHECK_FALSE(std::filesystem::exists(file.string() + ".tmp"));
    // Saving again replaces the list.
    save_node_list(dir.str(), addrs({"other:1"}));
    CHECK(*load_node_list(dir.str()) == addrs({"other:1"}));
  }

  SECTION("an empty list is recorded, and differs from none") {
    save_node_list(dir.str(), {});
    auto loaded = load_node_list(dir.str());
    REQUIRE(loaded);
    CHECK(loaded->empty());
  }

  SECTION("comments, blank lines and a missing last newline are read") {
    write_file(file, "# nodes\n\nnode1:5000\n# more\n[::1]:7000");
    auto loaded = load_node_list(dir.str());
    REQUIRE(loaded);
    CHECK(*loaded == addrs({"node1:5000", "[::1]:7000"}));
  }

  SECTION("a malformed file is refused with its line") {
    write_file(file, "# nodes\nnode1:5000\nnode2:0\n");
    try {
      load_node_list(dir.str());
      FAIL("loaded a malformed file");
    } catch (const std::runtime_error& e) {
      std::string what = e.what();
      CHECK(what.find(file.string() + " line 3: 'node2:0'")
            != std::string::npos);
    }
    write_file(file, "# nodes\r\nnode1:5000\r\n");
    CHECK_THROWS_WITH(load_node_list(dir.str()),
                      Catch::Contains("line 2: 'node1:5000\\x0d'"));
    write_file(file, "node1:5000\n node2:5000\n");
    CHECK_THROWS_WITH(load_node_list(dir.str()), Catch::Contains("line 2"));
  }

  SECTION("a file listing an address twice is refused with its line") {
    write_file(file, "# nodes\na:1\nb:1\nA:1\n");
    CHECK_THROWS_WITH(load_node_list(dir.str()),
                      Catch::Contains("line 4") && Catch::Contains("a:1"));
  }

  SECTION("a list with an address twice is not saved") {
    CHECK_THROWS_AS(save_node_list(dir.str(), addrs({"a:1", "a:1"})),
                    std::runtime_error);
    CHECK_FALSE(std::filesystem::exists(file));
  }

  SECTION("an unreadable node list is an error, not a missing one") {
    std::filesystem::create_directory(file);
    CHECK_THROWS_WITH(load_node_list(dir.str()),
                      Catch::Contains(file.string()));
  }

  SECTION("saving into a missing dir fails naming the file") {
    CHECK_THROWS_WITH(save_node_list((dir.path / "missing").string(),
                                     addrs({"a:1"})),
                      Catch::Contains("missing/mailbox-nodes"));
  }
}
