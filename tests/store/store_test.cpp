// Tests of the SQLite store alone (no actors), each on a fresh temp directory.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/store/store.hpp"
#include "tests/test_support.hpp"

using namespace smsp;
using smsp::testing::temp_dir;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> texts_of(const std::vector<stored_mail>& mails) {
  std::vector<std::string> result;
  for (auto& mail : mails)
    result.push_back(mail.text);
  return result;
}

/// Sets a PRAGMA on the database file directly, as another program would.
void set_pragma(const std::string& file, const std::string& pragma) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  REQUIRE(
    sqlite3_exec(db, ("PRAGMA " + pragma).c_str(), nullptr, nullptr, nullptr)
    == SQLITE_OK);
  sqlite3_close(db);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const store_error& err) {
    return err.what();
  }
  return "";
}

} // namespace

TEST_CASE("sync modes parse by name") {
  CHECK(parse_sync_mode("full") == sync_mode::full);
  CHECK(parse_sync_mode("normal") == sync_mode::normal);
  CHECK(parse_sync_mode("off") == sync_mode::off);
  CHECK_FALSE(parse_sync_mode("FULL"));
  CHECK_FALSE(parse_sync_mode(""));
  CHECK(std::string{to_string(sync_mode::normal)} == "normal");
}

TEST_CASE("open creates the data dir, the file and the schema") {
  temp_dir dir;
  auto nested = (dir.path / "a" / "b").string();
  auto db = store::open(nested, sync_mode::full);
  CHECK(fs::exists(dir.path / "a" / "b" / "smsp.db"));
  CHECK(fs::exists(dir.path / "a" / "b" / "LOCK"));
  CHECK(fs::status(nested).permissions() == fs::perms::owner_all);
  CHECK(db.account_count() == 0);
  CHECK(db.imq().empty());
  CHECK(db.mailbox("alice").empty());
  CHECK_FALSE(db.password_hash("alice"));
}

TEST_CASE("accounts, posts, moves and deletes survive a reopen") {
  temp_dir dir;
  uint64_t hello_id = 0;
  {
    auto db = store::open(dir.str(), sync_mode::full);
    db.begin();
    CHECK(db.add_account("alice", "hash-a"));
    CHECK(db.add_account("bob", "hash-b"));
    CHECK_FALSE(db.add_account("alice", "other"));
    hello_id = db.post("alice", "hello bob");
    auto second = db.post("alice", "second");
    CHECK(second > hello_id);
    auto moved = db.move_to_mailbox(second, "bob");
    REQUIRE(moved);
    CHECK(moved->text == "second");
    db.commit();
  }
  auto db = store::open(dir.str(), sync_mode::full);
  CHECK(db.password_hash("alice") == std::optional<std::string>{"hash-a"});
  CHECK(db.password_hash("bob") == std::optional<std::string>{"hash-b"});
  CHECK(db.account_count() == 2);
  auto queued = db.imq();
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].id == hello_id);
  CHECK(queued[0].poster == "alice");
  auto mails = db.mailbox("bob");
  REQUIRE(mails.size() == 1);
  CHECK(mails[0].text == "second");
  db.begin();
  CHECK(db.delete_mail(mails[0].id));
  CHECK_FALSE(db.delete_mail(mails[0].id));
  db.commit();
  CHECK(db.mailbox("bob").empty());
}

TEST_CASE("mailboxes keep arrival order and ids are never reused") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::off);
  db.begin();
  std::vector<std::string> expected;
  for (int i = 0; i < 50; ++i) {
    auto text = "m" + std::to_string(i);
    auto id = db.post(i % 2 ? "p1" : "p2", text);
    auto target = i % 3 ? "bob" : "carol";
    REQUIRE(db.move_to_mailbox(id, target));
    if (i % 3)
      expected.push_back(text);
  }
  db.commit();
  CHECK(texts_of(db.mailbox("bob")) == expected);
  // Remove the newest message, then add one: its id must be a new one.
  auto bob = db.mailbox("bob");
  db.begin();
  REQUIRE(db.delete_mail(bob.back().id));
  auto id = db.post("p1", "again");
  auto moved = db.move_to_mailbox(id, "bob");
  db.commit();
  REQUIRE(moved);
  CHECK(moved->id > bob.back().id);
  auto after = db.mailbox("bob");
  CHECK(after.back().text == "again");
  CHECK(after.size() == bob.size());
}

TEST_CASE("binary texts round trip byte for byte") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  std::string text;
  for (int c = 1; c < 256; ++c)
    if (c != '\n' && c != '\r')
      text.push_back(static_cast<char>(c));
  text += std::string{"\xff\xfe invalid utf-8 \xc3"};
  db.begin();
  auto id = db.post("alice", text);
  auto moved = db.move_to_mailbox(id, "bob");
  db.commit();
  REQUIRE(moved);
  CHECK(moved->text == text);
  CHECK(db.mailbox("bob").at(0).text == text);
}

TEST_CASE("a move of a missing IMQ entry changes nothing") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto id = db.post("alice", "only once");
  REQUIRE(db.move_to_mailbox(id, "bob"));
  CHECK_FALSE(db.move_to_mailbox(id, "bob"));
  CHECK_FALSE(db.move_to_mailbox(id + 100, "bob"));
  db.commit();
  CHECK(db.mailbox("bob").size() == 1);
  CHECK(db.imq().empty());
}

TEST_CASE("a rolled back STORE leaves the message on the IMQ only") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto id = db.post("alice", "hello");
  db.commit();
  db.begin();
  REQUIRE(db.move_to_mailbox(id, "bob"));
  db.rollback();
  CHECK(db.mailbox("bob").empty());
  REQUIRE(db.imq().size() == 1);
  CHECK(db.imq()[0].id == id);
}

TEST_CASE("an uncommitted group is gone after the writer dies") {
  temp_dir dir;
  {
    auto db = store::open(dir.str(), sync_mode::full);
    db.begin();
    db.add_account("alice", "h");
    db.post("alice", "committed");
    db.commit();
  }
  // A child process commits some writes, leaves others open and dies
  // without closing anything, like a server hit by kill -9.
  auto child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto db = store::open(dir.str(), sync_mode::full);
    db.begin();
    db.add_account("bob", "h");
    auto id = db.post("alice", "moved");
    db.move_to_mailbox(id, "bob");
    db.commit();
    db.begin();
    db.add_account("carol", "h");
    db.post("alice", "never committed");
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto db = store::open(dir.str(), sync_mode::full);
  CHECK(db.password_hash("bob"));
  CHECK_FALSE(db.password_hash("carol"));
  CHECK(texts_of(db.mailbox("bob")) == std::vector<std::string>{"moved"});
  auto queued = db.imq();
  REQUIRE(queued.size() == 1);
  CHECK(queued[0].poster == "alice");
}

TEST_CASE("a data dir is locked by its server") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  // flock locks belong to the open file description, so a second open in
  // this process conflicts just like one from another process.
  auto err = error_of([&] { store::open(dir.str(), sync_mode::full); });
  CHECK(err.find("in use by another running smsp-actors") != std::string::npos);
  CHECK(err.find("pid " + std::to_string(::getpid())) != std::string::npos);
  // Readers do not take the lock.
  auto reader = store::open_reader(dir.str());
  CHECK(reader.account_count() == 0);
}

TEST_CASE("the lock is released when the store closes") {
  temp_dir dir;
  { auto db = store::open(dir.str(), sync_mode::full); }
  auto again = store::open(dir.str(), sync_mode::full);
  CHECK(again.account_count() == 0);
}

TEST_CASE("a data dir that cannot be written is refused clearly") {
  if (::geteuid() == 0) {
    // root writes anywhere: use a path below a regular file instead.
    temp_dir dir;
    fs::create_directories(dir.path);
    std::ofstream{dir.path / "file"} << "x";
    auto err = error_of([&] {
      store::open((dir.path / "file" / "sub").string(), sync_mode::full);
    });
    CHECK(err.find("cannot create data dir") != std::string::npos);
    return;
  }
  temp_dir dir;
  fs::create_directories(dir.path);
  fs::permissions(dir.path, fs::perms::owner_read | fs::perms::owner_exec);
  auto err = error_of([&] { store::open(dir.str(), sync_mode::full); });
  fs::permissions(dir.path, fs::perms::owner_all);
  CHECK(err.find("cannot write to data dir") != std::string::npos);
}

TEST_CASE("the schema version is checked") {
  temp_dir dir;
  { auto db = store::open(dir.str(), sync_mode::full); }
  auto file = (dir.path / "smsp.db").string();
  SECTION("a newer version is refused") {
    set_pragma(file, "user_version = 7");
    auto err = error_of([&] { store::open(dir.str(), sync_mode::full); });
    CHECK(err.find("schema version 7") != std::string::npos);
    CHECK(err.find("newer smsp-actors") != std::string::npos);
    err = error_of([&] { store::open_reader(dir.str()); });
    CHECK(err.find("newer smsp-actors") != std::string::npos);
  }
  SECTION("another program's database is refused") {
    set_pragma(file, "application_id = 42");
    auto err = error_of([&] { store::open(dir.str(), sync_mode::full); });
    CHECK(err.find("not an smsp-actors database") != std::string::npos);
  }
}

TEST_CASE("a foreign SQLite file or a non-database file is refused") {
  temp_dir dir;
  fs::create_directories(dir.path);
  auto file = (dir.path / "smsp.db").string();
  SECTION("SQLite file with other tables") {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr)
            == SQLITE_OK);
    sqlite3_close(db);
    auto err = error_of([&] { store::open(dir.str(), sync_mode::full); });
    CHECK(err.find("not an smsp-actors database") != std::string::npos);
  }
  SECTION("not a database at all") {
    std::ofstream{file} << std::string(4096, 'x');
    auto err = error_of([&] { store::open(dir.str(), sync_mode::full); });
    CHECK(err.find("not a database") != std::string::npos);
  }
}

TEST_CASE("dump reports the totals, the IMQ and the first mailboxes by name "
          "from one snapshot") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  db.add_account("alice", "h");
  db.add_account("bob", "h");
  db.add_account("carol", "h");
  for (int i = 0; i < 15; ++i)
    db.move_to_mailbox(db.post("alice", "b" + std::to_string(i)), "bob");
  db.post("bob", "queued");
  db.commit();
  uint64_t imq_count = 0;
  std::vector<std::pair<std::string, std::string>> imq_first;
  std::vector<std::tuple<std::string, uint64_t, size_t>> boxes;
  std::vector<std::string> bob_texts;
  std::vector<uint64_t> totals;
  store::dump_sink sink;
  sink.totals = [&](uint64_t accounts, uint64_t mail, uint64_t imq) {
    totals = {accounts, mail, imq};
  };
  sink.imq = [&](uint64_t count, const auto& first) {
    imq_count = count;
    imq_first = first;
  };
  sink.mailbox = [&](const std::string& owner, uint64_t count,
                     const std::vector<std::string>& texts) {
    boxes.emplace_back(owner, count, texts.size());
    if (owner == "bob")
      bob_texts = texts;
  };
  auto reader = store::open_reader(dir.str());
  reader.dump(sink, 10, 100);
  CHECK(totals == std::vector<uint64_t>{3, 15, 1});
  CHECK(imq_count == 1);
  CHECK(imq_first
        == std::vector<std::pair<std::string, std::string>>{{"bob", "queued"}});
  using row = std::tuple<std::string, uint64_t, size_t>;
  CHECK(boxes
        == std::vector<row>{{"alice", 0, 0}, {"bob", 15, 10}, {"carol", 0, 0}});
  REQUIRE(bob_texts.size() == 10);
  CHECK(bob_texts.front() == "b0");
  CHECK(bob_texts.back() == "b9");
  // Bounded: only the first two mailboxes by name, two texts each; the
  // totals still count everything.
  boxes.clear();
  totals.clear();
  reader.dump(sink, 2, 2);
  CHECK(totals == std::vector<uint64_t>{3, 15, 1});
  CHECK(imq_first.size() == 1);
  CHECK(boxes == std::vector<row>{{"alice", 0, 0}, {"bob", 15, 2}});
  CHECK(bob_texts == std::vector<std::string>{"b0", "b1"});
}

TEST_CASE("a reader sees each commit of the writer, never an open group") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  auto reader = store::open_reader(dir.str());
  db.begin();
  db.add_account("alice", "h");
  CHECK_FALSE(reader.password_hash("alice"));
  db.commit();
  CHECK(reader.password_hash("alice"));
}

// -- mailbox nodes: claims on the front, applied moves on the node ----------

namespace {

std::vector<std::pair<uint64_t, std::string>> claims_of(store& db) {
  std::vector<std::pair<uint64_t, std::string>> result;
  for (auto& claim : db.claimed_moves())
    result.emplace_back(claim.imq_id, claim.owner);
  return result;
}

/// The schema of version 1 as smsp-actors wrote it before mailbox nodes,
/// copied here so that the upgrade is tested against the real old file.
const char* const v1_schema = R"sql(
PRAGMA journal_mode = WAL;
CREATE TABLE accounts (
  name TEXT PRIMARY KEY,
  hash TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE imq (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  poster TEXT NOT NULL,
  text BLOB NOT NULL
);
CREATE TABLE mail (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  owner TEXT NOT NULL,
  text BLOB NOT NULL
);
CREATE INDEX mail_by_owner ON mail (owner, id);
PRAGMA application_id = 1397576528; -- 0x534d5350, "SMSP"
PRAGMA user_version = 1;
INSERT INTO accounts VALUES ('alice', 'hash-a'), ('bob', 'hash-b');
INSERT INTO imq (poster, text) VALUES ('alice', 'moved'), ('bob', 'queued');
INSERT INTO mail (owner, text) SELECT 'bob', text FROM imq WHERE id = 1;
DELETE FROM imq WHERE id = 1;
)sql";

/// Writes a version 1 database into `dir`, as an older server left it.
void make_v1_store(const fs::path& dir) {
  fs::create_directories(dir);
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir / "smsp.db").string().c_str(), &db) == SQLITE_OK);
  char* msg = nullptr;
  auto rc = sqlite3_exec(db, v1_schema, nullptr, nullptr, &msg);
  INFO((msg ? msg : ""));
  sqlite3_free(msg);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

int user_version_of(const fs::path& file) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.string().c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr)
          == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  auto result = sqlite3_column_int(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

bool is_store_id(const std::string& id) {
  return id.size() == 32
         && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

TEST_CASE("a claimed move is settled, or unclaimed and storable again") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto first = db.post("alice", "first");
  auto second = db.post("alice", "second");
  db.commit();
  db.begin();
  CHECK(db.claim_move(first, "bob") == std::optional<std::string>{"first"});
  CHECK(db.claim_move(second, "bob") == std::optional<std::string>{"second"});
  db.commit();
  CHECK(claims_of(db)
        == std::vector<std::pair<uint64_t, std::string>>{{first, "bob"},
                                                         {second, "bob"}});
  // The node applied the first: it leaves the IMQ with its claim.
  db.begin();
  CHECK(db.settle_move(first));
  CHECK_FALSE(db.settle_move(first));
  CHECK_FALSE(db.unclaim_move(first));
  db.commit();
  REQUIRE(db.imq().size() == 1);
  CHECK(db.imq()[0].id == second);
  CHECK(claims_of(db)
        == std::vector<std::pair<uint64_t, std::string>>{{second, "bob"}});
  // The node refused the second: storable again, locally or elsewhere.
  db.begin();
  CHECK(db.unclaim_move(second));
  CHECK_FALSE(db.unclaim_move(second));
  CHECK_FALSE(db.settle_move(second));
  db.commit();
  CHECK(db.claimed_moves().empty());
  REQUIRE(db.imq().size() == 1);
  CHECK(db.imq()[0].claimed_for.empty());
  db.begin();
  CHECK(db.claim_move(second, "carol") == std::optional<std::string>{"second"});
  CHECK(db.unclaim_move(second));
  auto moved = db.move_to_mailbox(second, "carol");
  db.commit();
  REQUIRE(moved);
  CHECK(moved->text == "second");
  CHECK(db.imq().empty());
  CHECK(db.mailbox("bob").empty());
}

TEST_CASE("claiming again for the same owner returns the text, another owner "
          "is refused") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto id = db.post("alice", "text");
  CHECK(db.claim_move(id, "bob") == std::optional<std::string>{"text"});
  CHECK(db.claim_move(id, "bob") == std::optional<std::string>{"text"});
  CHECK_FALSE(db.claim_move(id, "carol"));
  CHECK_FALSE(db.claim_move(id + 1, "bob"));
  db.commit();
  // One claim only, still bob's.
  CHECK(claims_of(db)
        == std::vector<std::pair<uint64_t, std::string>>{{id, "bob"}});
  db.begin();
  REQUIRE(db.settle_move(id));
  // Settled: gone, so claiming it is refused too.
  CHECK_FALSE(db.claim_move(id, "bob"));
  db.commit();
}

TEST_CASE("a local STORE refuses a claimed entry") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto id = db.post("alice", "text");
  REQUIRE(db.claim_move(id, "bob"));
  CHECK_FALSE(db.move_to_mailbox(id, "bob"));
  CHECK_FALSE(db.move_to_mailbox(id, "carol"));
  db.commit();
  CHECK(db.mailbox("bob").empty());
  CHECK(db.mailbox("carol").empty());
  REQUIRE(db.imq().size() == 1);
  CHECK(db.imq()[0].claimed_for == "bob");
}

TEST_CASE("claimed moves come back in claim order, not IMQ order") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto a1 = db.post("alice", "a1");
  auto c1 = db.post("carol", "c1");
  auto a2 = db.post("alice", "a2");
  auto c2 = db.post("carol", "c2");
  db.commit();
  db.begin();
  REQUIRE(db.claim_move(c2, "bob"));
  REQUIRE(db.claim_move(a1, "bob"));
  REQUIRE(db.claim_move(c1, "dave"));
  REQUIRE(db.claim_move(a2, "bob"));
  db.commit();
  using claims = std::vector<std::pair<uint64_t, std::string>>;
  CHECK(claims_of(db)
        == claims{{c2, "bob"}, {a1, "bob"}, {c1, "dave"}, {a2, "bob"}});
  // Unclaimed and claimed again: it goes to the end.
  db.begin();
  REQUIRE(db.unclaim_move(c2));
  REQUIRE(db.claim_move(c2, "bob"));
  db.commit();
  CHECK(claims_of(db)
        == claims{{a1, "bob"}, {c1, "dave"}, {a2, "bob"}, {c2, "bob"}});
}

TEST_CASE("claims survive a reopen and show in imq()") {
  temp_dir dir;
  uint64_t claimed = 0;
  uint64_t free = 0;
  {
    auto db = store::open(dir.str(), sync_mode::full);
    db.begin();
    claimed = db.post("alice", "claimed");
    free = db.post("alice", "free");
    REQUIRE(db.claim_move(claimed, "bob"));
    db.commit();
  }
  auto check = [&](store& db) {
    auto queued = db.imq();
    REQUIRE(queued.size() == 2);
    CHECK(queued[0].id == claimed);
    CHECK(queued[0].poster == "alice");
    CHECK(queued[0].claimed_for == "bob");
    CHECK(queued[1].id == free);
    CHECK(queued[1].claimed_for.empty());
    CHECK(claims_of(db)
          == std::vector<std::pair<uint64_t, std::string>>{{claimed, "bob"}});
  };
  auto db = store::open(dir.str(), sync_mode::full);
  check(db);
  auto reader = store::open_reader(dir.str());
  check(reader);
  // The resend after a restart gets the text again.
  db.begin();
  CHECK(db.claim_move(claimed, "bob") == std::optional<std::string>{"claimed"});
  db.commit();
}

TEST_CASE("a move is applied once per origin and IMQ id") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  auto id = db.apply_move("front-1", 7, "bob", "hello");
  REQUIRE(id);
  CHECK_FALSE(db.apply_move("front-1", 7, "bob", "hello"));
  // Same IMQ id from another front: another message.
  auto other = db.apply_move("front-2", 7, "bob", "other");
  REQUIRE(other);
  CHECK(*other > *id);
  db.commit();
  CHECK(texts_of(db.mailbox("bob"))
        == std::vector<std::string>{"hello", "other"});
  CHECK(db.mailbox("bob").at(0).id == *id);
  CHECK(db.applied_count() == 2);
  // The user deleted the mail before the front settled: a resend still does
  // nothing.
  db.begin();
  REQUIRE(db.delete_mail(*id));
  CHECK_FALSE(db.apply_move("front-1", 7, "bob", "hello"));
  // Whatever owner the resend names.
  CHECK_FALSE(db.apply_move("front-1", 7, "carol", "hello"));
  db.commit();
  CHECK(texts_of(db.mailbox("bob")) == std::vector<std::string>{"other"});
  CHECK(db.mailbox("carol").empty());
}

TEST_CASE("a rolled back apply leaves neither the mail nor the record") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  db.begin();
  REQUIRE(db.apply_move("front", 1, "bob", "hello"));
  db.rollback();
  CHECK(db.mailbox("bob").empty());
  CHECK(db.applied_count() == 0);
  db.begin();
  CHECK(db.apply_move("front", 1, "bob", "hello"));
  db.commit();
  CHECK(db.mailbox("bob").size() == 1);
}

TEST_CASE("applied records are forgotten one by one or pruned per owner") {
  temp_dir dir;
  {
    auto db = store::open(dir.str(), sync_mode::full);
    db.begin();
    for (uint64_t i = 1; i <= 5; ++i)
      REQUIRE(db.apply_move("front", i, "bob", "b" + std::to_string(i)));
    REQUIRE(db.apply_move("front", 6, "carol", "c6"));
    REQUIRE(db.apply_move("elsewhere", 1, "bob", "e1"));
    db.commit();
  }
  // The records are durable.
  auto db = store::open(dir.str(), sync_mode::full);
  CHECK(db.applied_count() == 7);
  db.begin();
  CHECK(db.forget_applied("front", 1));
  CHECK_FALSE(db.forget_applied("front", 1));
  CHECK_FALSE(db.forget_applied("nobody", 2));
  db.commit();
  CHECK(db.applied_count() == 6);
  // Forgotten: the same move applies again (the front only forgets after
  // settling, so it never sends it again).
  db.begin();
  CHECK(db.apply_move("front", 1, "bob", "b1 again"));
  CHECK(db.forget_applied("front", 1));
  // The front still has 3 and 9 claimed for bob: the others of bob's from
  // that front go, carol's and the other front's stay.
  CHECK(db.prune_applied("front", "bob", {9, 3}) == 3);
  CHECK(db.prune_applied("front", "bob", {9, 3}) == 0);
  db.commit();
  CHECK(db.applied_count() == 3);
  db.begin();
  CHECK_FALSE(db.apply_move("front", 3, "bob", "b3"));
  CHECK(db.apply_move("front", 2, "bob", "b2"));
  CHECK_FALSE(db.apply_move("front", 6, "carol", "c6"));
  CHECK_FALSE(db.apply_move("elsewhere", 1, "bob", "e1"));
  CHECK(db.prune_applied("front", "carol", {}) == 1);
  CHECK(db.prune_applied("elsewhere", "bob", {}) == 1);
  CHECK(db.prune_applied("front", "bob", {}) == 2);
  db.commit();
  CHECK(db.applied_count() == 0);
}

TEST_CASE("a version 1 file is upgraded by the server, refused by a reader") {
  temp_dir dir;
  make_v1_store(dir.path);
  auto file = dir.path / "smsp.db";
  auto err = error_of([&] { store::open_reader(dir.str()); });
  CHECK(err.find("schema version 1") != std::string::npos);
  CHECK(err.find("start the smsp-actors server") != std::string::npos);
  CHECK(user_version_of(file) == 1);
  std::string id;
  {
    auto db = store::open(dir.str(), sync_mode::full);
    CHECK(user_version_of(file) == 2);
    id = db.store_id();
    CHECK(is_store_id(id));
    CHECK(db.account_names() == std::vector<std::string>{"alice", "bob"});
    CHECK(db.password_hash("bob") == std::optional<std::string>{"hash-b"});
    CHECK(texts_of(db.mailbox("bob")) == std::vector<std::string>{"moved"});
    auto queued = db.imq();
    REQUIRE(queued.size() == 1);
    CHECK(queued[0].id == 2);
    CHECK(queued[0].poster == "bob");
    CHECK(queued[0].claimed_for.empty());
    // The new tables work, and ids go on from the old ones.
    db.begin();
    CHECK(db.claim_move(2, "alice") == std::optional<std::string>{"queued"});
    CHECK(db.post("alice", "new") == 3);
    CHECK(db.apply_move("front", 1, "alice", "applied"));
    db.commit();
  }
  auto reader = store::open_reader(dir.str());
  CHECK(reader.store_id() == id);
  CHECK(reader.claimed_moves().size() == 1);
  CHECK(reader.applied_count() == 1);
  auto db = store::open(dir.str(), sync_mode::full);
  CHECK(db.store_id() == id);
}

TEST_CASE("the store id is random per data dir and stable across reopens") {
  temp_dir one;
  temp_dir two;
  std::string id;
  {
    auto db = store::open(one.str(), sync_mode::full);
    id = db.store_id();
    CHECK(is_store_id(id));
    auto moved = std::move(db);
    CHECK(moved.store_id() == id);
  }
  CHECK(store::open(one.str(), sync_mode::full).store_id() == id);
  CHECK(store::open_reader(one.str()).store_id() == id);
  auto other = store::open(two.str(), sync_mode::full);
  CHECK(is_store_id(other.store_id()));
  CHECK(other.store_id() != id);
}

TEST_CASE("account names come sorted") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::full);
  CHECK(db.account_names().empty());
  db.begin();
  for (auto name : {"carol", "Zed", "alice", "bob", "al"})
    REQUIRE(db.add_account(name, "h"));
  db.commit();
  CHECK(db.account_names()
        == std::vector<std::string>{"Zed", "al", "alice", "bob", "carol"});
}

TEST_CASE("admin: remove_user removes the account, its mail and its storable "
          "posts in the caller's transaction") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::off);
  db.begin();
  REQUIRE(db.add_account("alice", "h1"));
  REQUIRE(db.add_account("bob", "h2"));
  auto for_bob = db.post("alice", "for bob");
  REQUIRE(db.move_to_mailbox(for_bob, "bob"));
  auto for_alice = db.post("bob", "for alice");
  REQUIRE(db.move_to_mailbox(for_alice, "alice"));
  db.post("bob", "bob unstored");
  auto claimed = db.post("bob", "bob claimed for a node");
  REQUIRE(db.claim_move(claimed, "carol"));
  db.post("alice", "alice unstored");
  db.commit();
  auto before = db.count_rows();
  CHECK(before.accounts == 2);
  CHECK(before.mail == 2);
  CHECK(before.imq == 3);
  db.begin();
  auto removed = db.remove_user("bob");
  db.commit();
  REQUIRE(removed);
  CHECK(removed->mail == 1);
  // The claimed post is on its way to a node: not bob's to take back.
  CHECK(removed->imq == 1);
  CHECK_FALSE(db.password_hash("bob"));
  CHECK(db.mailbox("bob").empty());
  CHECK(texts_of(db.mailbox("alice")) == std::vector<std::string>{"for alice"});
  std::vector<std::string> posters;
  for (auto& msg : db.imq())
    posters.push_back(msg.poster);
  CHECK(posters == std::vector<std::string>{"bob", "alice"});
  db.begin();
  CHECK_FALSE(db.remove_user("bob"));
  db.rollback();
  auto after = db.count_rows();
  CHECK(after.accounts == 1);
  CHECK(after.mail == 1);
  CHECK(after.imq == 2);
}

TEST_CASE("admin: a rolled back remove_user changes nothing") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::off);
  db.begin();
  REQUIRE(db.add_account("bob", "h"));
  db.post("bob", "unstored");
  db.commit();
  db.begin();
  REQUIRE(db.remove_user("bob"));
  db.rollback();
  CHECK(db.password_hash("bob") == std::string{"h"});
  CHECK(db.imq().size() == 1);
}

TEST_CASE("admin: set_password_hash and account_names_matching") {
  temp_dir dir;
  auto db = store::open(dir.str(), sync_mode::off);
  db.begin();
  for (auto name : {"alice", "albert", "bob", "Alan"})
    REQUIRE(db.add_account(name, "old"));
  REQUIRE(db.set_password_hash("alice", "new"));
  CHECK_FALSE(db.set_password_hash("nobody", "new"));
  db.commit();
  CHECK(db.password_hash("alice") == std::string{"new"});
  CHECK(db.password_hash("bob") == std::string{"old"});
  auto reader = store::open_reader(dir.str());
  CHECK(reader.account_names_matching("*")
        == std::vector<std::string>{"Alan", "albert", "alice", "bob"});
  CHECK(reader.account_names_matching("al*")
        == std::vector<std::string>{"albert", "alice"});
  CHECK(reader.account_names_matching("[AB]*")
        == std::vector<std::string>{"Alan"});
  CHECK(reader.account_names_matching("b?b")
        == std::vector<std::string>{"bob"});
  CHECK(reader.account_names_matching("x*").empty());
  CHECK(reader.count_rows().accounts == 4);
}
