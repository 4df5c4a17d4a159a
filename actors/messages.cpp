// Domain errors of smsp-actors as CAF error values and as reply lines.
#include "actors/messages.hpp"

namespace smsp {

caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), error_category};
}

std::string error_reply(errc code) {
  switch (code) {
    case errc::not_logged_in:
      return "KO not logged in";
    case errc::user_exists:
      return "KO user exists";
    case errc::bad_username:
      return "KO bad username";
    case errc::bad_password:
      return "KO bad password";
    case errc::login_failed:
      return "KO wrong username or password";
    case errc::no_such_user:
      return "KO no such user";
    case errc::nothing_to_store:
      return "KO nothing to store";
    case errc::not_your_mailbox:
      return "KO not your mailbox";
    case errc::mailbox_empty:
      return "KO mailbox empty";
    case errc::server_busy:
      return "KO server busy";
    case errc::mailbox_full:
      return "KO mailbox full";
    case errc::too_many_unstored:
      return "KO too many unstored messages";
    case errc::storage_failed:
      return "KO storage failed, nothing was saved";
  }
  return "KO internal error";
}

} // namespace smsp
