// Actor tests of moves to mailboxes on a node: exactly once, in order.
#include <chrono>
#include <memory>
#include <thread>

#include "tests/actors/fixture.hpp"

using namespace smsp;
using namespace smsp::testing;
using namespace std::string_literals;

namespace {

/// The actors of a mailbox node, in the fixture's actor system (no sockets:
/// what crosses processes in production is the same typed messages), over a
/// data dir of their own. The fixture plays the front.
struct node_side {
  fixture& f;
  temp_dir dir{"smsp-node"};
  writer_actor writer;
  reader_actor reader;
  node_actor host;
  std::shared_ptr<node_mailbox_context> ctx;
  std::vector<mailbox_actor> boxes;

  explicit node_side(fixture& front) : f(front) {
    start();
  }

  ~node_side() {
    stop();
  }

  void start() {
    auto db = store::open(dir.str(), sync_mode::off);
    auto id = db.store_id();
    writer = spawn_writer(f.sys, std::move(db));
    reader = spawn_reader(f.sys, dir.str());
    host = spawn_node_host(f.sys, writer, reader, id);
    ctx = std::make_shared<node_mailbox_context>();
    ctx->reader = reader;
    ctx->writer = writer;
    ctx->host = host;
  }

  /// Stops every actor of the node, as a node process that dies would
  /// (its committed writes stay in its store).
  void stop() {
    for (auto& box : boxes)
      f.stop_actor(box);
    boxes.clear();
    f.stop_actor(host);
    f.stop_actor(reader);
    f.stop_actor(writer);
  }

  /// `owner`'s mailbox, spawned on the node as a front's remote spawn does,
  /// for moves from the fixture's store.
  mailbox_actor mailbox(const std::string& owner, uint64_t max_mailbox = 100) {
    auto box = spawn_node_mailbox(f.sys, owner, origin(), max_mailbox, ctx);
    boxes.push_back(box);
    return box;
  }

  /// The front's store id: the origin of its moves.
  std::string origin() {
    return store::open_reader(f.dir.str()).store_id();
  }

  /// Applied moves the node has not forgotten yet.
  uint64_t applied() {
    return must(f.ask_node<uint64_t>(reader, stats_atom::value));
  }
};

/// Polls `pred` until it holds or 10 s passed (a hang detector: the
/// settling and forgetting after a move's answer are asynchronous).
template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  return true;
}

caf::expected<caf::ok_atom> move_to(fixture& f, const std::string& poster,
                                    const std::string& owner,
                                    const mailbox_actor& box) {
  return f.ask_imq<caf::ok_atom>(store_atom::value, poster, owner, box);
}

caf::expected<caf::ok_atom> finish(fixture& f, const std::string& owner,
                                   const mailbox_actor& box) {
  return f.ask_imq<caf::ok_atom>(finish_atom::value, owner, box);
}

} // namespace

TEST_CASE("a STORE to a mailbox on a node moves the message once and "
          "settles it") {
  fixture f;
  node_side node{f};
  must(f.imq_post("alice", "hello bob"));
  auto bob = node.mailbox("bob");
  CHECK(outcome(move_to(f, "alice", "bob", bob)) == "OK");
  CHECK(must(f.mailbox_count(bob)) == 1);
  CHECK(must(f.mailbox_get(bob)) == "hello bob");
  // Settled at the front, then forgotten on the node.
  CHECK(eventually([&] { return f.stored_imq().empty(); }));
  CHECK(eventually([&] { return node.applied() == 0; }));
  // Nothing left for a second STORE.
  CHECK(outcome(move_to(f, "alice", "bob", bob)) == ko(errc::nothing_to_store));
}

TEST_CASE("a node killed between its apply and the front's removal, with a "
          "DELMSG in between, delivers no duplicate") {
  fixture f;
  node_side node{f};
  must(f.imq_post("alice", "only once"));
  auto id = f.stored_imq().at(0).id;
  // The front's first two steps, then the front "crashes": claimed, and
  // applied on the node, but not settled.
  CHECK(must(f.ask_writer<std::string>(claim_atom::value, id, "bob"))
        == "only once");
  auto first = node.mailbox("bob");
  CHECK(outcome(f.ask_mailbox<caf::ok_atom>(first, apply_atom::value, id,
                                            "only once"s, true))
        == "OK");
  // The node dies and comes back; the user reads and deletes the message.
  node.stop();
  node.start();
  auto second = node.mailbox("bob");
  CHECK(must(f.mailbox_count(second)) == 1);
  CHECK(outcome(f.mailbox_delete(second)) == "OK");
  CHECK(node.applied() == 1);
  // The front restarts and finishes its claimed move: the node knows it
  // applied it, so the deleted message does not come back.
  f.restart();
  CHECK(f.stored_imq().at(0).claimed_for == "bob");
  auto third = node.mailbox("bob");
  CHECK(outcome(finish(f, "bob", third)) == "OK");
  CHECK(must(f.mailbox_count(third)) == 0);
  CHECK(eventually([&] { return f.stored_imq().empty(); }));
  CHECK(eventually([&] { return node.applied() == 0; }));
}

TEST_CASE("moves left unanswered keep their claims, and the next activation "
          "completes them in the order of their STOREs") {
  fixture f;
  node_side node{f};
  must(f.imq_post("carol", "first"));
  must(f.imq_post("alice", "second"));
  // A mailbox that is gone: no answer, as from a node that died.
  auto gone = node.mailbox("bob");
  f.stop_actor(node.boxes.back());
  CHECK(outcome(move_to(f, "carol", "bob", gone))
        == ko(errc::mailbox_unavailable));
  CHECK(outcome(move_to(f, "alice", "bob", gone))
        == ko(errc::mailbox_unavailable));
  // Claimed: no other STORE takes them.
  CHECK(outcome(f.imq_store("alice", "dave")) == ko(errc::nothing_to_store));
  CHECK(must(f.ask_imq<std::vector<std::string>>(claimed_atom::value))
        == std::vector<std::string>{"bob"});
  auto bob = node.mailbox("bob");
  CHECK(outcome(finish(f, "bob", bob)) == "OK");
  CHECK(must(f.mailbox_count(bob)) == 2);
  CHECK(must(f.mailbox_get(bob)) == "first");
  CHECK(outcome(f.mailbox_delete(bob)) == "OK");
  CHECK(must(f.mailbox_get(bob)) == "second");
  CHECK(eventually([&] { return f.stored_imq().empty(); }));
  CHECK(must(f.ask_imq<std::vector<std::string>>(claimed_atom::value)).empty());
}

TEST_CASE("a move refused as full gives the message back to its poster") {
  fixture f;
  node_side node{f};
  auto bob = node.mailbox("bob", 1);
  must(f.imq_post("alice", "fills it"));
  CHECK(outcome(move_to(f, "alice", "bob", bob)) == "OK");
  must(f.imq_post("alice", "one too many"));
  CHECK(outcome(move_to(f, "alice", "bob", bob)) == ko(errc::mailbox_full));
  CHECK(must(f.mailbox_count(bob)) == 1);
  // Storable again, by a STORE to someone else.
  CHECK(eventually([&] {
    auto imq = f.stored_imq();
    return imq.size() == 1 && imq[0].claimed_for.empty();
  }));
  auto carol = node.mailbox("carol");
  CHECK(outcome(move_to(f, "alice", "carol", carol)) == "OK");
  CHECK(must(f.mailbox_get(carol)) == "one too many");
}

TEST_CASE("a repeated apply goes in even when the mailbox is full, once") {
  fixture f;
  node_side node{f};
  auto bob = node.mailbox("bob", 1);
  auto apply = [&](uint64_t id, const std::string& text, bool first) {
    return outcome(
      f.ask_mailbox<caf::ok_atom>(bob, apply_atom::value, id, text, first));
  };
  CHECK(apply(7, "seven", true) == "OK");
  CHECK(apply(8, "eight", true) == ko(errc::mailbox_full));
  // Not a first attempt: it may have been applied before, so it is never
  // refused, and applied at most once.
  CHECK(apply(8, "eight", false) == "OK");
  CHECK(apply(8, "eight", false) == "OK");
  CHECK(apply(7, "seven", false) == "OK");
  CHECK(must(f.mailbox_count(bob)) == 2);
}

TEST_CASE("a new mailbox of an owner on a node retires the previous one "
          "first and loads its writes") {
  fixture f;
  node_side node{f};
  auto first = node.mailbox("bob");
  CHECK(outcome(f.ask_mailbox<caf::ok_atom>(first, apply_atom::value,
                                            uint64_t{1}, "one"s, true))
        == "OK");
  f.self->monitor(first);
  auto second = node.mailbox("bob");
  CHECK(f.wait_down(first.address()));
  CHECK(must(f.mailbox_count(second)) == 1);
}

TEST_CASE("a node's host refuses a front of another version, naming both") {
  fixture f;
  node_side node{f};
  auto front = caf::actor_cast<caf::actor>(f.self);
  auto refused = f.ask_node<node_figures>(node.host, hello_atom::value,
                                          "0.0.0-other"s, "front"s, front);
  REQUIRE(!refused);
  auto why = f.sys.render(refused.error());
  CHECK(why.find("0.0.0-other") != std::string::npos);
  CHECK(why.find(smsp_version()) != std::string::npos);
  auto figures = must(f.ask_node<node_figures>(
    node.host, hello_atom::value, smsp_version(), "front"s, front));
  CHECK(figures.version == smsp_version());
}
