// The durable store over SQLite: schema, lock, prepared statements.
#include "actors/store/store.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

namespace smsp {

namespace {

/// "SMSP" in ASCII: marks the file as ours (PRAGMA application_id).
constexpr int application_id = 0x534d5350;

/// The schema of version 1, which version 2 extends (so that an upgrade
/// runs exactly the statements a new file gets on top of it).
const char* const schema_v1_sql = R"sql(
CREATE TABLE accounts (
  name TEXT PRIMARY KEY,
  hash TEXT NOT NULL
) WITHOUT ROWID;
-- AUTOINCREMENT: an id is never reused, so the actors that remember ids
-- never confuse a new row with a removed one, and ids follow arrival order.
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
)sql";

/// What version 2 adds: mailbox nodes.
const char* const schema_v2_sql = R"sql(
-- Key-value facts about this database, such as its store_id.
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
-- Front side: IMQ entries being moved to a mailbox on a node. A claimed
-- entry is not storable otherwise. seq keeps the claim order, so that a
-- front resending its claims after a crash keeps each mailbox's order;
-- AUTOINCREMENT so that it only grows.
CREATE TABLE imq_claims (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  imq_id INTEGER NOT NULL UNIQUE,
  owner TEXT NOT NULL
);
-- Node side: the moves applied to a mailbox here, by the origin front's
-- store_id and its IMQ id, so that applying one again does nothing. Not
-- the mail row: the user may delete the mail before the front settles.
CREATE TABLE applied_moves (
  origin TEXT NOT NULL,
  imq_id INTEGER NOT NULL,
  owner TEXT NOT NULL,
  PRIMARY KEY (origin, imq_id)
) WITHOUT ROWID;
-- Holds the primary key too, so it serves (owner, origin) lookups.
CREATE INDEX applied_by_owner ON applied_moves (owner);
)sql";

std::string database_file(const std::string& dir) {
  return (std::filesystem::path{dir} / "smsp.db").string();
}

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw store_error{what + ": " + (db ? sqlite3_errmsg(db) : "out of memory")};
}

/// 16 random bytes from the kernel as 32 lowercase hex digits. Read here
/// rather than from SQLite's randomblob(), whose generator is seeded once
/// per process and so repeats in a forked child.
std::string random_store_id() {
  unsigned char bytes[16];
  size_t got = 0;
  int err = EIO; // for a read that ends early without an error
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
  } else {
    while (got < sizeof(bytes)) {
      auto n = ::read(fd, bytes + got, sizeof(bytes) - got);
      if (n > 0) {
        got += static_cast<size_t>(n);
      } else if (n == 0 || errno != EINTR) {
        if (n < 0)
          err = errno;
        break;
      }
    }
    ::close(fd);
  }
  if (got != sizeof(bytes))
    throw store_error{std::string{"cannot read /dev/urandom for the store id: "}
                      + std::strerror(err)};
  static constexpr char digits[] = "0123456789abcdef";
  std::string result;
  for (auto byte : bytes) {
    result.push_back(digits[byte >> 4]);
    result.push_back(digits[byte & 0xf]);
  }
  return result;
}

void exec(sqlite3* db, const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string text = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    throw store_error{std::string{sql} + ": " + text};
  }
}

/// The single integer a query such as a PRAGMA returns.
int64_t query_int(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK)
    fail(db, sql);
  int64_t result = 0;
  auto rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    result = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    fail(db, sql);
  return result;
}

std::string column_bytes(sqlite3_stmt* stmt, int column) {
  auto data = static_cast<const char*>(sqlite3_column_blob(stmt, column));
  auto size = static_cast<size_t>(sqlite3_column_bytes(stmt, column));
  return data ? std::string{data, size} : std::string{};
}

/// Runs `fn` in one write transaction, rolled back if it throws.
template <class F>
void write_transaction(sqlite3* db, F fn) {
  exec(db, "BEGIN IMMEDIATE");
  try {
    fn();
    exec(db, "COMMIT");
  } catch (...) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

/// Adds what version 2 has on top of version 1, with a new store_id, and
/// sets the version; inside the caller's transaction.
void create_v2_part(sqlite3* db) {
  exec(db, schema_v2_sql);
  // The id is hex digits only, so it can be spliced into the statement.
  exec(db, ("INSERT INTO meta (key, value) VALUES ('store_id', '"
            + random_store_id() + "')")
             .c_str());
  exec(
    db,
    ("PRAGMA user_version = " + std::to_string(store::schema_version)).c_str());
}

/// The store_id of a database of the current schema version.
std::string read_store_id(sqlite3* db, const std::string& file) {
  const char* sql = "SELECT value FROM meta WHERE key = 'store_id'";
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK)
    fail(db, sql);
  std::string result;
  auto rc = sqlite3_step(stmt);
  if (rc == SQLITE_ROW)
    result = column_bytes(stmt, 0);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    fail(db, sql);
  if (result.empty())
    throw store_error{file + " has no store_id (damaged?)"};
  return result;
}

/// Creates the schema in a new file, upgrades a version 1 file (writable
/// only), or checks that an existing one is an smsp-actors database of the
/// version this code knows.
void check_schema(sqlite3* db, const std::string& file, bool writable) {
  auto version = query_int(db, "PRAGMA user_version");
  auto app = query_int(db, "PRAGMA application_id");
  auto tables = query_int(db, "SELECT count(*) FROM sqlite_master");
  if (app == 0 && version == 0 && tables == 0) {
    if (!writable)
      throw store_error{file + " has no smsp-actors data yet"};
    write_transaction(db, [db] {
      exec(db, schema_v1_sql);
      exec(
        db,
        ("PRAGMA application_id = " + std::to_string(application_id)).c_str());
      create_v2_part(db);
    });
    return;
  }
  if (app != application_id)
    throw store_error{file
                      + " is not an smsp-actors database (another "
                        "program's file?); move it away or choose "
                        "another --data-dir"};
  // A newer version may give the same tables a meaning this code does not
  // know (e.g. claims it would ignore and so store a message twice), and
  // there is no way back down: refused, even for reading.
  if (version > store::schema_version)
    throw store_error{file + " has schema version " + std::to_string(version)
                      + ", written by a newer smsp-actors; this one reads "
                        "version "
                      + std::to_string(store::schema_version)};
  if (version == 1) {
    // Upgrading writes, which only the server holding the data dir's lock
    // may do; a reader (e.g. dump) cannot, and must not guess.
    if (!writable)
      throw store_error{file
                        + " has schema version 1; start the "
                          "smsp-actors server on this data dir once to "
                          "upgrade it to version "
                        + std::to_string(store::schema_version)};
    // One transaction: a crash leaves version 1 whole, upgraded again at
    // the next start. The version is read again under the write lock in
    // case another writer upgraded it meanwhile.
    write_transaction(db, [db] {
      if (query_int(db, "PRAGMA user_version") == 1)
        create_v2_part(db);
    });
    return;
  }
  if (version != store::schema_version)
    throw store_error{file + " has unknown schema version "
                      + std::to_string(version)};
}

/// Takes the directory's lock for this process, or explains who holds it.
int lock_data_dir(const std::string& dir) {
  auto file = (std::filesystem::path{dir} / "LOCK").string();
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw store_error{"cannot write to data dir " + dir + ": "
                      + std::strerror(errno)};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    auto err = errno;
    char pid[32] = {};
    auto n = ::pread(fd, pid, sizeof(pid) - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw store_error{"data dir " + dir
                        + " is in use by another running smsp-actors"
                        + (n > 0 ? std::string{" (pid "} + pid + ")" : "")};
    throw store_error{"cannot lock data dir " + dir + ": "
                      + std::strerror(err)};
  }
  auto pid = std::to_string(::getpid());
  if (::ftruncate(fd, 0) != 0
      || ::pwrite(fd, pid.data(), pid.size(), 0)
           != static_cast<ssize_t>(pid.size())) {
    auto err = errno;
    ::close(fd);
    throw store_error{"cannot write to data dir " + dir + ": "
                      + std::strerror(err)};
  }
  return fd;
}

} // namespace

std::optional<sync_mode> parse_sync_mode(const std::string& name) {
  if (name == "full")
    return sync_mode::full;
  if (name == "normal")
    return sync_mode::normal;
  if (name == "off")
    return sync_mode::off;
  return std::nullopt;
}

const char* to_string(sync_mode mode) {
  switch (mode) {
    case sync_mode::full:
      return "full";
    case sync_mode::normal:
      return "normal";
    default:
      return "off";
  }
}

/// A prepared statement that is reset (and its bindings cleared) when the
/// guard returned by use() goes out of scope.
class statement {
public:
  statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_,
                           nullptr)
        != SQLITE_OK)
      fail(db, sql);
  }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement() {
    sqlite3_finalize(stmt_);
  }

  /// Binders return an rvalue so that `auto q = st.use().text(...)` moves
  /// the one guard instead of copying it (a copy's end would reset the
  /// statement under the other).
  class use_guard {
  public:
    explicit use_guard(statement& st) : st_(&st) {
    }
    use_guard(use_guard&& other) noexcept
      : st_(std::exchange(other.st_, nullptr)) {
    }
    use_guard(const use_guard&) = delete;
    use_guard& operator=(const use_guard&) = delete;
    use_guard& operator=(use_guard&&) = delete;
    ~use_guard() {
      if (st_ != nullptr) {
        sqlite3_reset(st_->stmt_);
        sqlite3_clear_bindings(st_->stmt_);
      }
    }
    use_guard&& text(int index, const std::string& value) {
      check(sqlite3_bind_text(st_->stmt_, index, value.data(),
                              static_cast<int>(value.size()), SQLITE_STATIC));
      return std::move(*this);
    }
    use_guard&& blob(int index, const std::string& value) {
      check(sqlite3_bind_blob(st_->stmt_, index, value.data(),
                              static_cast<int>(value.size()), SQLITE_STATIC));
      return std::move(*this);
    }
    use_guard&& integer(int index, int64_t value) {
      check(sqlite3_bind_int64(st_->stmt_, index, value));
      return std::move(*this);
    }
    /// True while there is a row to read.
    bool step() {
      auto rc = sqlite3_step(st_->stmt_);
      if (rc == SQLITE_ROW)
        return true;
      if (rc != SQLITE_DONE)
        fail(st_->db_, sqlite3_sql(st_->stmt_));
      return false;
    }
    sqlite3_stmt* raw() const {
      return st_->stmt_;
    }

  private:
    void check(int rc) {
      if (rc != SQLITE_OK)
        fail(st_->db_, sqlite3_sql(st_->stmt_));
    }
    statement* st_;
  };

  use_guard use() {
    return use_guard{*this};
  }

private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

struct store::statements {
  explicit statements(sqlite3* db)
    : add_account(db, "INSERT OR IGNORE INTO accounts (name, hash) "
                      "VALUES (?1, ?2)"),
      post(db, "INSERT INTO imq (poster, text) VALUES (?1, ?2)"),
      imq_storable_text(db, "SELECT text FROM imq WHERE id = ?1 AND NOT EXISTS "
                            "(SELECT 1 FROM imq_claims WHERE imq_id = ?1)"),
      imq_delete(db, "DELETE FROM imq WHERE id = ?1"),
      mail_insert(db, "INSERT INTO mail (owner, text) VALUES (?1, ?2)"),
      mail_delete(db, "DELETE FROM mail WHERE id = ?1"),
      password_hash(db, "SELECT hash FROM accounts WHERE name = ?1"),
      mailbox(db, "SELECT id, text FROM mail WHERE owner = ?1 ORDER BY id"),
      imq(db, "SELECT imq.id, imq.poster, coalesce(imq_claims.owner, '') "
              "FROM imq LEFT JOIN imq_claims ON imq_claims.imq_id = imq.id "
              "ORDER BY imq.id"),
      imq_claim(db, "SELECT imq.text, imq_claims.owner FROM imq LEFT JOIN "
                    "imq_claims ON imq_claims.imq_id = imq.id "
                    "WHERE imq.id = ?1"),
      claim_insert(db, "INSERT INTO imq_claims (imq_id, owner) "
                       "VALUES (?1, ?2)"),
      claim_delete(db, "DELETE FROM imq_claims WHERE imq_id = ?1"),
      claims(db, "SELECT imq_id, owner FROM imq_claims ORDER BY seq"),
      applied_insert(db, "INSERT OR IGNORE INTO applied_moves "
                         "(origin, imq_id, owner) VALUES (?1, ?2, ?3)"),
      applied_delete(db, "DELETE FROM applied_moves "
                         "WHERE origin = ?1 AND imq_id = ?2"),
      applied_of_owner(db, "SELECT imq_id FROM applied_moves "
                           "WHERE owner = ?1 AND origin = ?2"),
      applied_count(db, "SELECT count(*) FROM applied_moves"),
      account_names(db, "SELECT name FROM accounts ORDER BY name"),
      begin(db, "BEGIN IMMEDIATE"),
      commit(db, "COMMIT"),
      rollback(db, "ROLLBACK") {
  }
  statement add_account, post, imq_storable_text, imq_delete, mail_insert,
    mail_delete, password_hash, mailbox, imq, imq_claim, claim_insert,
    claim_delete, claims, applied_insert, applied_delete, applied_of_owner,
    applied_count, account_names, begin, commit, rollback;
};

store store::open(const std::string& dir, sync_mode mode) {
  std::error_code ec;
  auto created = std::filesystem::create_directories(dir, ec);
  if (ec)
    throw store_error{"cannot create data dir " + dir + ": " + ec.message()};
  // Password hashes and every message live here: a new data dir is the
  // server's user's alone. An existing one keeps what the operator chose.
  if (created)
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
  store result;
  result.lock_fd_ = lock_data_dir(dir);
  result.path_ = database_file(dir);
  if (sqlite3_open_v2(result.path_.c_str(), &result.db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                        | SQLITE_OPEN_NOMUTEX,
                      nullptr)
      != SQLITE_OK)
    fail(result.db_, "cannot open " + result.path_);
  sqlite3_busy_timeout(result.db_, 5000);
  // Sorts and temporary tables in memory: no temporary file, so that no
  // query ever needs a new file descriptor.
  exec(result.db_, "PRAGMA temp_store = MEMORY");
  check_schema(result.db_, result.path_, true);
  exec(result.db_, "PRAGMA journal_mode = WAL");
  switch (mode) {
    case sync_mode::full:
      exec(result.db_, "PRAGMA synchronous = FULL");
      break;
    case sync_mode::normal:
      exec(result.db_, "PRAGMA synchronous = NORMAL");
      break;
    case sync_mode::off:
      exec(result.db_, "PRAGMA synchronous = OFF");
      break;
  }
  result.prepare();
  return result;
}

store store::open_reader(const std::string& dir) {
  store result;
  result.path_ = database_file(dir);
  if (sqlite3_open_v2(result.path_.c_str(), &result.db_,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr)
      != SQLITE_OK)
    fail(result.db_, "cannot open " + result.path_);
  sqlite3_busy_timeout(result.db_, 5000);
  // Sorts and temporary tables in memory: no temporary file, so that no
  // query ever needs a new file descriptor.
  exec(result.db_, "PRAGMA temp_store = MEMORY");
  check_schema(result.db_, result.path_, false);
  result.prepare();
  return result;
}

void store::prepare() {
  store_id_ = read_store_id(db_, path_);
  stmts_ = std::make_unique<statements>(db_);
}

store::store(store&& other) noexcept
  : db_(std::exchange(other.db_, nullptr)),
    stmts_(std::move(other.stmts_)),
    path_(std::move(other.path_)),
    store_id_(std::move(other.store_id_)),
    lock_fd_(std::exchange(other.lock_fd_, -1)) {
}

store& store::operator=(store&& other) noexcept {
  if (this != &other) {
    close();
    db_ = std::exchange(other.db_, nullptr);
    stmts_ = std::move(other.stmts_);
    path_ = std::move(other.path_);
    store_id_ = std::move(other.store_id_);
    lock_fd_ = std::exchange(other.lock_fd_, -1);
  }
  return *this;
}

store::~store() {
  close();
}

void store::close() noexcept {
  stmts_.reset();
  if (db_ != nullptr) {
    if (!sqlite3_get_autocommit(db_))
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }
  // Closing the descriptor releases the lock; the file stays for the next
  // start (removing it would race with a starting server).
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
}

void store::begin() {
  stmts_->begin.use().step();
}

void store::commit() {
  try {
    stmts_->commit.use().step();
  } catch (const store_error&) {
    if (in_transaction())
      rollback();
    throw;
  }
}

void store::rollback() {
  stmts_->rollback.use().step();
}

bool store::in_transaction() const {
  return db_ != nullptr && sqlite3_get_autocommit(db_) == 0;
}

bool store::add_account(const std::string& name, const std::string& hash) {
  stmts_->add_account.use().text(1, name).text(2, hash).step();
  return sqlite3_changes(db_) == 1;
}

uint64_t store::post(const std::string& poster, const std::string& text) {
  stmts_->post.use().text(1, poster).blob(2, text).step();
  return static_cast<uint64_t>(sqlite3_last_insert_rowid(db_));
}

std::optional<stored_mail> store::move_to_mailbox(uint64_t imq_id,
                                                  const std::string& owner) {
  stored_mail result;
  {
    auto query = stmts_->imq_storable_text.use().integer(1, imq_id);
    if (!query.step())
      return std::nullopt;
    result.text = column_bytes(query.raw(), 0);
  }
  stmts_->mail_insert.use().text(1, owner).blob(2, result.text).step();
  result.id = static_cast<uint64_t>(sqlite3_last_insert_rowid(db_));
  stmts_->imq_delete.use().integer(1, imq_id).step();
  return result;
}

bool store::delete_mail(uint64_t mail_id) {
  stmts_->mail_delete.use().integer(1, mail_id).step();
  return sqlite3_changes(db_) == 1;
}

std::optional<std::string> store::claim_move(uint64_t imq_id,
                                             const std::string& owner) {
  std::string text;
  {
    auto query = stmts_->imq_claim.use().integer(1, imq_id);
    if (!query.step())
      return std::nullopt;
    if (sqlite3_column_type(query.raw(), 1) != SQLITE_NULL)
      return column_bytes(query.raw(), 1) == owner
               ? std::optional<std::string>{column_bytes(query.raw(), 0)}
               : std::nullopt;
    text = column_bytes(query.raw(), 0);
  }
  stmts_->claim_insert.use().integer(1, imq_id).text(2, owner).step();
  return text;
}

bool store::unclaim_move(uint64_t imq_id) {
  stmts_->claim_delete.use().integer(1, imq_id).step();
  return sqlite3_changes(db_) == 1;
}

bool store::settle_move(uint64_t imq_id) {
  stmts_->claim_delete.use().integer(1, imq_id).step();
  if (sqlite3_changes(db_) != 1)
    return false;
  // A claimed entry cannot leave the IMQ otherwise (move_to_mailbox refuses
  // it), so it is still there.
  stmts_->imq_delete.use().integer(1, imq_id).step();
  return true;
}

std::optional<uint64_t>
store::apply_move(const std::string& origin, uint64_t imq_id,
                  const std::string& owner, const std::string& text) {
  stmts_->applied_insert.use()
    .text(1, origin)
    .integer(2, imq_id)
    .text(3, owner)
    .step();
  if (sqlite3_changes(db_) != 1)
    return std::nullopt;
  stmts_->mail_insert.use().text(1, owner).blob(2, text).step();
  return static_cast<uint64_t>(sqlite3_last_insert_rowid(db_));
}

bool store::forget_applied(const std::string& origin, uint64_t imq_id) {
  stmts_->applied_delete.use().text(1, origin).integer(2, imq_id).step();
  return sqlite3_changes(db_) == 1;
}

size_t store::prune_applied(const std::string& origin, const std::string& owner,
                            const std::vector<uint64_t>& keep) {
  // Collected first: deleting rows of the table a query is still stepping
  // through is not well defined in SQLite.
  std::vector<uint64_t> doomed;
  auto kept = keep;
  std::sort(kept.begin(), kept.end());
  {
    auto query = stmts_->applied_of_owner.use().text(1, owner).text(2, origin);
    while (query.step()) {
      auto id = static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0));
      if (!std::binary_search(kept.begin(), kept.end(), id))
        doomed.push_back(id);
    }
  }
  for (auto id : doomed)
    stmts_->applied_delete.use().text(1, origin).integer(2, id).step();
  return doomed.size();
}

std::optional<std::string> store::password_hash(const std::string& name) {
  auto query = stmts_->password_hash.use().text(1, name);
  if (!query.step())
    return std::nullopt;
  return column_bytes(query.raw(), 0);
}

std::vector<stored_mail> store::mailbox(const std::string& owner) {
  std::vector<stored_mail> result;
  auto query = stmts_->mailbox.use().text(1, owner);
  while (query.step())
    result.push_back(
      {static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0)),
       column_bytes(query.raw(), 1)});
  return result;
}

std::vector<queued_message> store::imq() {
  std::vector<queued_message> result;
  auto query = stmts_->imq.use();
  while (query.step())
    result.push_back(
      {static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0)),
       column_bytes(query.raw(), 1), column_bytes(query.raw(), 2)});
  return result;
}

std::vector<claimed_move> store::claimed_moves() {
  std::vector<claimed_move> result;
  auto query = stmts_->claims.use();
  while (query.step())
    result.push_back(
      {static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0)),
       column_bytes(query.raw(), 1)});
  return result;
}

uint64_t store::applied_count() {
  auto query = stmts_->applied_count.use();
  return query.step()
           ? static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0))
           : 0;
}

std::vector<std::string> store::account_names() {
  std::vector<std::string> result;
  auto query = stmts_->account_names.use();
  while (query.step())
    result.push_back(column_bytes(query.raw(), 0));
  return result;
}

uint64_t store::account_count() {
  return static_cast<uint64_t>(query_int(db_, "SELECT count(*) FROM accounts"));
}

uint64_t store::mail_count() {
  return static_cast<uint64_t>(query_int(db_, "SELECT count(*) FROM mail"));
}

void store::dump(const dump_sink& sink, size_t texts, size_t max_mailboxes,
                 dump_names names_of) {
  // One read transaction: every line describes the same moment. Claimed
  // entries are reported as IMQ messages (counted and listed): they are
  // until settle_move() removes them, and the claim is no text to show.
  exec(db_, "BEGIN");
  try {
    statement imq_count{db_, "SELECT count(*) FROM imq"};
    statement imq_first{db_, "SELECT poster, text FROM imq ORDER BY id "
                             "LIMIT ?1"};
    // Both name queries walk an index (the accounts' key, mail_by_owner).
    statement accounts{db_, names_of == dump_names::accounts
                              ? "SELECT name FROM accounts ORDER BY name "
                                "LIMIT ?1"
                              : "SELECT DISTINCT owner FROM mail ORDER BY "
                                "owner LIMIT ?1"};
    statement account_count{db_, "SELECT count(*) FROM accounts"};
    statement mail_total{db_, "SELECT count(*) FROM mail"};
    statement mail_count{db_, "SELECT count(*) FROM mail WHERE owner = ?1"};
    statement mail_first{db_, "SELECT text FROM mail WHERE owner = ?1 "
                              "ORDER BY id LIMIT ?2"};
    auto count_of = [](statement& stmt) {
      auto query = stmt.use();
      return query.step()
               ? static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0))
               : uint64_t{0};
    };
    {
      auto count = count_of(imq_count);
      if (sink.totals)
        sink.totals(count_of(account_count), count_of(mail_total), count);
      std::vector<std::pair<std::string, std::string>> first;
      auto query = imq_first.use().integer(1, static_cast<int64_t>(texts));
      while (query.step())
        first.emplace_back(column_bytes(query.raw(), 0),
                           column_bytes(query.raw(), 1));
      sink.imq(count, first);
    }
    auto names = accounts.use().integer(1, static_cast<int64_t>(max_mailboxes));
    while (names.step()) {
      auto owner = column_bytes(names.raw(), 0);
      uint64_t count = 0;
      {
        auto query = mail_count.use().text(1, owner);
        if (query.step())
          count = static_cast<uint64_t>(sqlite3_column_int64(query.raw(), 0));
      }
      std::vector<std::string> first;
      if (count > 0) {
        auto query = mail_first.use().text(1, owner).integer(
          2, static_cast<int64_t>(texts));
        while (query.step())
          first.emplace_back(column_bytes(query.raw(), 0));
      }
      sink.mailbox(owner, count, first);
    }
  } catch (...) {
    exec(db_, "ROLLBACK");
    throw;
  }
  exec(db_, "COMMIT");
}

} // namespace smsp
