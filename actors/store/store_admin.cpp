// The store's queries and writes for the admin tool (smsp-admin): counts,
// account listing by glob, removing a user, replacing a password hash.
#include <sqlite3.h>

#include "actors/store/store.hpp"

namespace smsp {

namespace {

/// One statement prepared for a single use: the admin's requests are rare,
/// so they keep no prepared statement between calls.
class one_shot {
public:
  one_shot(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK)
      fail(sql);
  }
  one_shot(const one_shot&) = delete;
  one_shot& operator=(const one_shot&) = delete;
  ~one_shot() {
    sqlite3_finalize(stmt_);
  }
  one_shot& text(int index, const std::string& value) {
    if (sqlite3_bind_text(stmt_, index, value.data(),
                          static_cast<int>(value.size()), SQLITE_TRANSIENT)
        != SQLITE_OK)
      fail(sqlite3_sql(stmt_));
    return *this;
  }
  /// True while there is a row to read.
  bool step() {
    auto rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW)
      return true;
    if (rc != SQLITE_DONE)
      fail(sqlite3_sql(stmt_));
    return false;
  }
  uint64_t integer(int column) const {
    return static_cast<uint64_t>(sqlite3_column_int64(stmt_, column));
  }
  std::string column_text(int column) const {
    auto p = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    auto n = sqlite3_column_bytes(stmt_, column);
    return p == nullptr ? std::string{}
                        : std::string{p, static_cast<size_t>(n)};
  }

private:
  [[noreturn]] void fail(const char* what) {
    throw store_error{std::string{what} + ": " + sqlite3_errmsg(db_)};
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

uint64_t count_of(sqlite3* db, const char* sql) {
  one_shot q{db, sql};
  return q.step() ? q.integer(0) : 0;
}

} // namespace

store::totals store::count_rows() {
  // One read transaction, so the three counts are of one snapshot.
  one_shot{db_, "BEGIN"}.step();
  try {
    totals t;
    t.accounts = count_of(db_, "SELECT count(*) FROM accounts");
    t.mail = count_of(db_, "SELECT count(*) FROM mail");
    t.imq = count_of(db_, "SELECT count(*) FROM imq");
    one_shot{db_, "COMMIT"}.step();
    return t;
  } catch (const store_error&) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

std::vector<std::string>
store::account_names_matching(const std::string& glob) {
  one_shot q{db_, "SELECT name FROM accounts WHERE name GLOB ?1 ORDER BY name"};
  q.text(1, glob);
  std::vector<std::string> out;
  while (q.step())
    out.push_back(q.column_text(0));
  return out;
}

std::optional<store::removed_user> store::remove_user(const std::string& name) {
  {
    one_shot q{db_, "DELETE FROM accounts WHERE name = ?1"};
    q.text(1, name).step();
    if (sqlite3_changes(db_) == 0)
      return std::nullopt;
  }
  removed_user out;
  {
    one_shot q{db_, "DELETE FROM mail WHERE owner = ?1"};
    q.text(1, name).step();
    out.mail = static_cast<uint64_t>(sqlite3_changes(db_));
  }
  {
    one_shot q{db_, "DELETE FROM imq WHERE poster = ?1 AND id NOT IN "
                    "(SELECT imq_id FROM imq_claims)"};
    q.text(1, name).step();
    out.imq = static_cast<uint64_t>(sqlite3_changes(db_));
  }
  return out;
}

bool store::set_password_hash(const std::string& name,
                              const std::string& hash) {
  one_shot q{db_, "UPDATE accounts SET hash = ?2 WHERE name = ?1"};
  q.text(1, name).text(2, hash).step();
  return sqlite3_changes(db_) == 1;
}

} // namespace smsp
