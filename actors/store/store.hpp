// The durable store: accounts, the IMQ and mailboxes in one SQLite file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace smsp {

/// When a commit reaches the disk (PRAGMA synchronous in WAL mode).
enum class sync_mode {
  /// fsync of the write-ahead log at every commit: an acknowledged write
  /// survives kill -9 and a power loss.
  full,
  /// fsync only at checkpoints: survives kill -9; a power loss may lose the
  /// last commits, never the file's consistency.
  normal,
  /// never fsync: survives kill -9; a power loss may lose commits and may
  /// corrupt the file.
  off,
};

std::optional<sync_mode> parse_sync_mode(const std::string& name);
const char* to_string(sync_mode mode);

/// Why the store cannot open or write; the message is for the operator.
struct store_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One message of a mailbox, identified for DELMSG.
struct stored_mail {
  uint64_t id = 0;
  std::string text;
};

/// One IMQ entry; its text stays in the store until STORE moves it.
struct queued_message {
  uint64_t id = 0;
  std::string poster;
  /// The owner whose mailbox on a node this entry is being moved to (see
  /// claim_move); empty while the entry is storable.
  std::string claimed_for;
};

/// One IMQ entry claimed for a move to a mailbox on a node, not yet settled.
struct claimed_move {
  uint64_t imq_id = 0;
  std::string owner;
};

/// The file, its schema and its lock. Plain C++ over SQLite (no actors):
/// the store actor owns the writable one and brackets writes with
/// begin()/commit() to commit a whole group at once; readers open their
/// own read-only connection. Not thread-safe: one owner at a time.
class store {
public:
  /// The schema this code reads and writes (PRAGMA user_version). Version 2
  /// added the claims, the applied moves and the store's id (mailbox
  /// nodes); open() upgrades a version 1 file.
  static constexpr int schema_version = 2;

  /// Opens (creating if missing) `dir` and its database for writing, takes
  /// the directory's lock (one server per data dir), creates or checks the
  /// schema. Throws store_error with the reason.
  static store open(const std::string& dir, sync_mode mode);

  /// A read-only connection to the database in `dir`, which a writable
  /// store must have created (or upgraded to this schema version). Throws
  /// store_error.
  static store open_reader(const std::string& dir);

  store(store&&) noexcept;
  store& operator=(store&&) noexcept;
  ~store();

  const std::string& path() const {
    return path_;
  }

  /// This database's identity: 32 lowercase hex digits drawn at random when
  /// the schema was created (or upgraded), read at open. A front sends it
  /// as the `origin` of its moves, so a recreated data dir, whose IMQ ids
  /// restart at 1, never matches a node's old applied records.
  const std::string& store_id() const {
    return store_id_;
  }

  // -- writes: only inside begin() ... commit() / rollback() ----------------

  void begin();
  /// Throws store_error when the commit fails; the transaction is then
  /// rolled back.
  void commit();
  void rollback();
  bool in_transaction() const;

  /// False when the name is taken.
  bool add_account(const std::string& name, const std::string& hash);
  /// Appends to the IMQ; returns the entry's id (ids grow with each post).
  uint64_t post(const std::string& poster, const std::string& text);
  /// Moves IMQ entry `imq_id` to the end of `owner`'s mailbox in one step;
  /// nullopt when there is no such entry or it is claimed for a move to a
  /// node (its text may be in a node's mailbox already).
  std::optional<stored_mail> move_to_mailbox(uint64_t imq_id,
                                             const std::string& owner);
  /// False when there is no such message.
  bool delete_mail(uint64_t mail_id);

  // A STORE to a mailbox on another process (a node) is exactly-once in
  // four steps, each one transaction: the front claims the IMQ entry
  // (claim_move), the node applies it (apply_move), the front settles it
  // (settle_move), the node forgets its applied record (forget_applied).
  // After a crash the front sends its claimed_moves() again; the node's
  // applied records make the repeated apply a no-op.

  // -- writes, front side ----------------------------------------------------

  /// Marks IMQ entry `imq_id` as being moved to `owner`'s mailbox on a node
  /// and returns its text. Claiming it again for the same owner returns the
  /// text again (a resend after a crash). nullopt when there is no such
  /// entry or it is claimed for another owner.
  std::optional<std::string> claim_move(uint64_t imq_id,
                                        const std::string& owner);
  /// The node refused the move (e.g. the mailbox is full): the entry is
  /// storable again. False when it was not claimed.
  bool unclaim_move(uint64_t imq_id);
  /// The node applied the move: removes the IMQ entry and its claim. False
  /// when it was not claimed (then nothing changes).
  bool settle_move(uint64_t imq_id);

  // -- writes, node side -----------------------------------------------------

  /// Appends `text` to `owner`'s mailbox and records (origin, imq_id) as
  /// applied, both in the caller's transaction; returns the new mail id.
  /// nullopt, changing nothing, when (origin, imq_id) was applied already
  /// (for whichever owner), even if that mail has been deleted since: the
  /// record is kept until forget_applied() or prune_applied().
  std::optional<uint64_t> apply_move(const std::string& origin, uint64_t imq_id,
                                     const std::string& owner,
                                     const std::string& text);
  /// The front settled the move: its record is no longer needed. False when
  /// there is no such record.
  bool forget_applied(const std::string& origin, uint64_t imq_id);
  /// Forgets `owner`'s applied records from `origin` except those of the
  /// IMQ ids in `keep` (the moves that front still has claimed); returns
  /// how many were forgotten. Clears the records whose forget was lost.
  size_t prune_applied(const std::string& origin, const std::string& owner,
                       const std::vector<uint64_t>& keep);

  // -- reads ----------------------------------------------------------------

  std::optional<std::string> password_hash(const std::string& name);
  /// `owner`'s messages, oldest first.
  std::vector<stored_mail> mailbox(const std::string& owner);
  /// Every IMQ entry, oldest first (without texts), claimed ones included.
  std::vector<queued_message> imq();
  /// Every claimed, unsettled move, in claim order (oldest claim first).
  std::vector<claimed_move> claimed_moves();
  /// How many applied records this (node's) store keeps.
  uint64_t applied_count();
  uint64_t account_count();
  /// Messages in the mailboxes of this store.
  uint64_t mail_count();
  /// Every account's name, sorted bytewise.
  std::vector<std::string> account_names();

  // -- the admin tool (actors/store/store_admin.cpp)
  // ---------------------------

  /// Committed rows: accounts, mailbox messages, IMQ messages (claimed ones
  /// included). Throws store_error.
  struct totals {
    uint64_t accounts = 0;
    uint64_t mail = 0;
    uint64_t imq = 0;
  };
  totals count_rows();
  /// The account names matching `glob` (SQLite's GLOB: `*`, `?`, `[...]`,
  /// case-sensitive), sorted bytewise. Throws store_error.
  std::vector<std::string> account_names_matching(const std::string& glob);
  /// What remove_user removed.
  struct removed_user {
    uint64_t mail = 0;
    uint64_t imq = 0;
  };
  /// In the caller's transaction: removes account `name`, every message of
  /// its mailbox and its IMQ posts that are not claimed for a move to a node
  /// (those are another mailbox's mail already, or about to be). nullopt,
  /// changing nothing, when there is no such account. Throws store_error.
  std::optional<removed_user> remove_user(const std::string& name);
  /// In the caller's transaction: replaces `name`'s password hash; false
  /// when there is no such account. Throws store_error.
  bool set_password_hash(const std::string& name, const std::string& hash);

  /// Where dump() reports; each callback gets a count and the first texts.
  struct dump_sink {
    /// Accounts, mailbox messages and IMQ messages in all (an entry claimed
    /// for a move to a node counts as IMQ until it is settled).
    std::function<void(uint64_t accounts, uint64_t mail, uint64_t imq)> totals;
    std::function<void(
      uint64_t count,
      const std::vector<std::pair<std::string, std::string>>& poster_text)>
      imq;
    std::function<void(const std::string& owner, uint64_t count,
                       const std::vector<std::string>& texts)>
      mailbox;
  };

  /// Whose mailboxes dump() lists.
  enum class dump_names {
    /// The accounts' (a front's store: empty mailboxes too).
    accounts,
    /// The owners of stored mail (a node's store, which has no accounts).
    mail_owners,
  };

  /// Reports, all from one read snapshot: the totals; the IMQ with its first
  /// `texts` entries; then the first `max_mailboxes` mailboxes by name (of
  /// `names`), each with its count and first `texts` texts. Only what is
  /// reported is read, so the cost is bounded whatever the store holds (the
  /// totals are counts). Throws store_error.
  void dump(const dump_sink& sink, size_t texts, size_t max_mailboxes,
            dump_names names = dump_names::accounts);

private:
  store() = default;
  struct statements;
  void prepare();
  void close() noexcept;

  sqlite3* db_ = nullptr;
  std::unique_ptr<statements> stmts_;
  std::string path_;
  std::string store_id_;
  /// The data directory's lock file (writable stores only), or -1.
  int lock_fd_ = -1;
};

} // namespace smsp
