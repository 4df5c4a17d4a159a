// The durable store over SQLite: schema, lock, prepared statements.
#include "actors/store/store.hpp"

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

const char* const schema_sql = R"sql(
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

std::string database_file(const std::string& dir) {
  return (std::filesystem::path{dir} / "smsp.db").string();
}

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw store_error{what + ": " + (db ? sqlite3_errmsg(db) : "out of memory")};
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

/// Creates the schema in a new file, or checks that an existing one is an
/// smsp-actors database of the version this code knows.
void check_schema(sqlite3* db, const std::string& file, bool writable) {
  auto version = query_int(db, "PRAGMA user_version");
  auto app = query_int(db, "PRAGMA application_id");
  auto tables = query_int(db, "SELECT count(*) FROM sqlite_master");
  if (app == 0 && version == 0 && tables == 0) {
    if (!writable)
      throw store_error{file + " has no smsp-actors data yet"};
    exec(db, "BEGIN IMMEDIATE");
    exec(db, schema_sql);
    exec(db,
         ("PRAGMA application_id = " + std::to_string(application_id)
          + "; PRAGMA user_version = " + std::to_string(store::schema_version))
           .c_str());
    exec(db, "COMMIT");
    return;
  }
  if (app != application_id)
    throw store_error{file
                      + " is not an smsp-actors database (another "
                        "program's file?); move it away or choose "
                        "another --data-dir"};
  if (version > store::schema_version)
    throw store_error{file + " has schema version " + std::to_string(version)
                      + ", written by a newer smsp-actors; this one reads "
                        "version "
                      + std::to_string(store::schema_version)};
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
      imq_text(db, "SELECT text FROM imq WHERE id = ?1"),
      imq_delete(db, "DELETE FROM imq WHERE id = ?1"),
      mail_insert(db, "INSERT INTO mail (owner, text) VALUES (?1, ?2)"),
      mail_delete(db, "DELETE FROM mail WHERE id = ?1"),
      password_hash(db, "SELECT hash FROM accounts WHERE name = ?1"),
      mailbox(db, "SELECT id, text FROM mail WHERE owner = ?1 ORDER BY id"),
      imq(db, "SELECT id, poster FROM imq ORDER BY id"),
      begin(db, "BEGIN IMMEDIATE"),
      commit(db, "COMMIT"),
      rollback(db, "ROLLBACK") {
  }
  statement add_account, post, imq_text, imq_delete, mail_insert, mail_delete,
    password_hash, mailbox, imq, begin, commit, rollback;
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
  stmts_ = std::make_unique<statements>(db_);
}

store::store(store&& other) noexcept
  : db_(std::exchange(other.db_, nullptr)),
    stmts_(std::move(other.stmts_)),
    path_(std::move(other.path_)),
    lock_fd_(std::exchange(other.lock_fd_, -1)) {
}

store& store::operator=(store&& other) noexcept {
  if (this != &other) {
    close();
    db_ = std::exchange(other.db_, nullptr);
    stmts_ = std::move(other.stmts_);
    path_ = std::move(other.path_);
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
    auto query = stmts_->imq_text.use().integer(1, imq_id);
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
       column_bytes(query.raw(), 1)});
  return result;
}

uint64_t store::account_count() {
  return static_cast<uint64_t>(query_int(db_, "SELECT count(*) FROM accounts"));
}

void store::dump(const dump_sink& sink, size_t texts, size_t max_mailboxes) {
  // One read transaction: every line describes the same moment.
  exec(db_, "BEGIN");
  try {
    statement imq_count{db_, "SELECT count(*) FROM imq"};
    statement imq_first{db_, "SELECT poster, text FROM imq ORDER BY id "
                             "LIMIT ?1"};
    statement accounts{db_, "SELECT name FROM accounts ORDER BY name "
                            "LIMIT ?1"};
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
