// Every reply line the server sends, defined once.
#include "net/wire/replies.hpp"

namespace smsp::reply {

std::string ok_with(std::string_view value) {
  std::string out;
  out.reserve(3 + value.size());
  out.append(ok).append(" ").append(value);
  return out;
}

std::string counted(uint64_t n) {
  return "COUNTED " + std::to_string(n);
}

std::string_view failure(errc code) {
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
    case errc::mailbox_unavailable:
      return "KO mailbox unavailable";
    // Only the admin interface meets these (net/wire/admin.cpp).
    case errc::user_on_node:
    case errc::change_under_way:
      return internal_error;
  }
  return internal_error;
}

std::string_view failure(errc code, command cmd) {
  if (code == errc::not_logged_in && cmd == command::message)
    return log_in_first;
  return failure(code);
}

std::string failure(const parse_error& err) {
  switch (err.code) {
    case parse_errc::empty_request:
      return "KO empty request";
    case parse_errc::request_too_long:
      return "KO request too long";
    case parse_errc::unknown_command:
      return "KO unknown command";
    case parse_errc::wrong_arity:
      return "KO usage: " + std::string{err.spec->usage};
    case parse_errc::text_too_long:
      return "KO message text too long";
  }
  return std::string{internal_error};
}

} // namespace smsp::reply
