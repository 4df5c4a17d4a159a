// The server's command table: one row and one small handler per command.
#include "net/commands.hpp"

#include "actors/log.hpp"
#include "caf/all.hpp"
#include "net/wire/replies.hpp"

namespace smsp {

namespace {

using broker = connection_broker;

/// Sends one request to the registry. Its deadline is kept by the
/// connection's deadline check rather than by a CAF request timeout: those
/// cost a timer on CAF's clock thread per request (measured: a third of the
/// throughput).
template <class... Ts>
auto ask_registry(broker* self, Ts&&... xs) {
  return self->request(self->state.deps.registry, caf::infinite,
                       std::forward<Ts>(xs)...);
}

/// Answers `OK` to a request that succeeded.
auto reply_ok(broker* self, uint64_t seq) {
  return [=](caf::ok_atom) { complete(self, seq, std::string{reply::ok}); };
}

/// Answers `OK <value>`: a cookie or a message text.
auto reply_ok_with(broker* self, uint64_t seq) {
  return
    [=](std::string& value) { complete(self, seq, reply::ok_with(value)); };
}

auto reply_failed(broker* self, uint64_t seq, command cmd) {
  return [=](caf::error& err) { complete_failed(self, seq, cmd, err); };
}

/// "user=... addr=..." of an auth log line, in the registry's format
/// (registry.cpp, auth_subject; docs/OPERATIONS.md documents both).
std::string auth_subject(broker* self, const std::string& user) {
  return "user=" + printable(user, 64)
         + " addr=" + self->remote_addr(self->state.hdl);
}

// REGISTER <username> <password>
void on_register(broker* self, uint64_t seq, const request& req) {
  // Logged here, where the client's address is known: accounts created, and
  // refusals (someone probing for names, or a script gone wrong).
  ask_registry(self, register_atom::value, req.args[0], req.args[1])
    .then(
      [=, user = req.args[0]](std::string& cookie) {
        log_info("auth", "REGISTER: " + auth_subject(self, user));
        complete(self, seq, reply::ok_with(cookie));
      },
      [=, user = req.args[0], cmd = req.cmd()](caf::error& err) {
        if (err.category() == error_category) {
          // "KO user exists" -> "user exists".
          auto why = reply::failure(static_cast<errc>(err.code()));
          why.remove_prefix(std::min(why.size(), size_t{3}));
          log_info("auth", "REGISTER refused: " + auth_subject(self, user)
                             + " reason=\"" + std::string{why} + "\"");
        }
        complete_failed(self, seq, cmd, err);
      });
}

// LOGIN <username> <password>
void on_login(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, login_atom::value, req.args[0], req.args[1],
               self->remote_addr(self->state.hdl))
    .then(reply_ok_with(self, seq), reply_failed(self, seq, req.cmd()));
}

// LOGOUT <cookie>
void on_logout(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, logout_atom::value, req.cookie())
    .then(reply_ok(self, seq), reply_failed(self, seq, req.cmd()));
}

// MESSAGE <text> <cookie>
void on_message(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, post_atom::value, req.cookie(), req.args[0])
    .then(reply_ok(self, seq), reply_failed(self, seq, req.cmd()));
}

// STORE <username> <cookie>
void on_store(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, store_atom::value, req.cookie(), req.args[0])
    .then(reply_ok(self, seq), reply_failed(self, seq, req.cmd()));
}

// COUNT <username> <cookie>
void on_count(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, count_atom::value, req.cookie(), req.args[0])
    .then([=](uint64_t n) { complete(self, seq, reply::counted(n)); },
          reply_failed(self, seq, req.cmd()));
}

// GETMSG <username> <cookie>
void on_getmsg(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, caf::get_atom::value, req.cookie(), req.args[0])
    .then(reply_ok_with(self, seq), reply_failed(self, seq, req.cmd()));
}

// DELMSG <username> <cookie>
void on_delmsg(broker* self, uint64_t seq, const request& req) {
  ask_registry(self, caf::delete_atom::value, req.cookie(), req.args[0])
    .then(reply_ok(self, seq), reply_failed(self, seq, req.cmd()));
}

// DUMP
void on_dump(broker* self, uint64_t seq, const request&) {
  dump_after_earlier(self, seq);
}

constexpr auto short_reply = reply_kind::short_reply;

/// In `command` order, like the codec's table (checked below).
constexpr std::array<command_row, command_count> command_rows{{
  {command::register_user, ordering::barrier, deadline::hashing, short_reply,
   on_register},
  {command::login, ordering::barrier, deadline::hashing, short_reply, on_login},
  {command::logout, ordering::pipelined, deadline::request, short_reply,
   on_logout},
  {command::message, ordering::pipelined, deadline::request, short_reply,
   on_message},
  {command::store, ordering::barrier_with_nodes, deadline::request, short_reply,
   on_store},
  {command::count, ordering::pipelined, deadline::request, short_reply,
   on_count},
  {command::getmsg, ordering::pipelined, deadline::request,
   reply_kind::message_text, on_getmsg},
  {command::delmsg, ordering::pipelined, deadline::request, short_reply,
   on_delmsg},
  {command::dump, ordering::barrier, deadline::request, short_reply, on_dump},
}};

// Both tables list the same commands in the same order.
static_assert([] {
  for (size_t i = 0; i < command_count; ++i)
    if (command_rows[i].cmd != command_specs[i].cmd)
      return false;
  return true;
}());

} // namespace

const command_row& row_of(command cmd) {
  return command_rows[static_cast<size_t>(cmd)];
}

size_t max_reply_bytes(const command_row& row, const wire_limits& wire) {
  if (row.reply == reply_kind::message_text)
    return reply::max_text_bytes(wire.max_text);
  return reply::max_short_bytes;
}

} // namespace smsp
