// The domain errors of smsp-actors: plain C++, shared by the actors and the
// reply text (net/wire/replies.hpp).
#pragma once

#include <cstdint>

namespace smsp {

/// Domain errors. The actors return them as values (caf::error of category
/// "smsp", see messages.hpp); only the connection turns them into text.
enum class errc : uint8_t {
  not_logged_in = 1,
  user_exists,
  bad_username,
  bad_password,
  login_failed,
  no_such_user,
  nothing_to_store,
  not_your_mailbox,
  mailbox_empty,
  server_busy,
  mailbox_full,
  too_many_unstored,
  /// The store could not commit; nothing of the request was kept.
  storage_failed,
  /// The mailbox lives on a mailbox node that is down, unreachable or did
  /// not answer in time.
  mailbox_unavailable,
  // admin tool
  /// The user's mail is on a mailbox node (or on the way to one): deleting
  /// such a user is not supported (docs/OPERATIONS.md, "The admin tool").
  user_on_node,
  /// Another admin change of the same user (delete, passwd) is under way.
  change_under_way,
};

} // namespace smsp
