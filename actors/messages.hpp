// Every actor message: atoms, typed interfaces and the domain errors.
#pragma once

#include <cstdint>
#include <string>

#include "caf/atom.hpp"
#include "caf/error.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"

namespace smsp {

// CAF 0.17 already defines get_atom, put_atom, delete_atom and ok_atom; the
// interfaces below reuse them.
using register_atom = caf::atom_constant<caf::atom("register")>;
using login_atom = caf::atom_constant<caf::atom("login")>;
using logout_atom = caf::atom_constant<caf::atom("logout")>;
using post_atom = caf::atom_constant<caf::atom("post")>;
using store_atom = caf::atom_constant<caf::atom("store")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using dump_atom = caf::atom_constant<caf::atom("dump")>;
using hash_atom = caf::atom_constant<caf::atom("hash")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;
/// A connection broker to itself: its last switch of reading took effect.
/// (It also sends itself caf::tick_atom to check its deadlines.)
using settled_atom = caf::atom_constant<caf::atom("settled")>;

/// Domain errors; they travel as caf::error values of category "smsp" and
/// become `KO <reason>` at the connection.
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
};

/// Lets CAF turn an errc into a caf::error implicitly.
caf::error make_error(errc code);

/// The category atom of every smsp error.
constexpr caf::atom_value error_category = caf::atom("smsp");

/// The reply line for a domain error, e.g. "KO mailbox empty".
std::string error_reply(errc code);

/// One user's FIFO of messages.
using mailbox_actor = caf::typed_actor<
  // Number of waiting messages.
  caf::replies_to<count_atom>::with<uint64_t>,
  // Text of the oldest message, which stays; errc::mailbox_empty.
  caf::replies_to<caf::get_atom>::with<std::string>,
  // Removes the oldest message; errc::mailbox_empty.
  caf::replies_to<caf::delete_atom>::with<caf::ok_atom>,
  // Appends a message.
  caf::replies_to<caf::put_atom, std::string>::with<caf::ok_atom>,
  // Logs the count and the first texts (sent one-way by the registry's DUMP).
  caf::reacts_to<dump_atom>>;

/// The incoming message queue: texts tagged with their poster's account.
using imq_actor = caf::typed_actor<
  // (poster, text): appends to the queue.
  caf::replies_to<post_atom, std::string, std::string>::with<caf::ok_atom>,
  // (poster, target): moves the poster's most recent message into the
  // target mailbox; the message stays queued until the mailbox accepted it.
  // errc::nothing_to_store.
  caf::replies_to<store_atom, std::string, mailbox_actor>::with<caf::ok_atom>,
  // Logs the queue length and the first texts.
  caf::replies_to<dump_atom>::with<caf::ok_atom>>;

/// Accounts, password hashes, sessions and the directory of mailboxes.
/// Every request of a connection goes to the registry, which checks the
/// session and delegates to the mailbox or the imq: the reply comes from
/// there. Requests from one sender thus reach each owner in the order sent;
/// only STORE's mailbox write takes a longer path (through the imq), so a
/// sender must await a STORE's reply before it reads the target mailbox.
using registry_actor = caf::typed_actor<
  // (username, password) -> cookie of a new session.
  // errc::user_exists, bad_username, bad_password, server_busy.
  caf::replies_to<register_atom, std::string, std::string>::with<std::string>,
  // (username, password) -> cookie; errc::login_failed, server_busy.
  caf::replies_to<login_atom, std::string, std::string>::with<std::string>,
  // (cookie): ends the session; errc::not_logged_in.
  caf::replies_to<logout_atom, std::string>::with<caf::ok_atom>,
  // (cookie, text): posts to the imq as the cookie's user;
  // errc::not_logged_in.
  caf::replies_to<post_atom, std::string, std::string>::with<caf::ok_atom>,
  // (cookie, username): moves the caller's most recent imq message into
  // that user's mailbox; errc::not_logged_in, no_such_user,
  // nothing_to_store.
  caf::replies_to<store_atom, std::string, std::string>::with<caf::ok_atom>,
  // (cookie, username): acts on the caller's own mailbox, which `username`
  // must name; errc::not_logged_in, not_your_mailbox, and for get and
  // delete mailbox_empty.
  caf::replies_to<count_atom, std::string, std::string>::with<uint64_t>,
  caf::replies_to<caf::get_atom, std::string, std::string>::with<std::string>,
  caf::replies_to<caf::delete_atom, std::string,
                  std::string>::with<caf::ok_atom>,
  // Logs account and session counts; the imq and every mailbox log
  // themselves.
  caf::replies_to<dump_atom>::with<caf::ok_atom>>;

/// A one-off helper of the registry's DUMP, on a thread of its own: it asks
/// every mailbox of a snapshot of the directory to log itself, then lets
/// the imq log itself and answer.
using dumper_actor =
  caf::typed_actor<caf::replies_to<dump_atom>::with<caf::ok_atom>>;

/// Argon2id password hashing, run off the registry's thread.
using hasher_actor = caf::typed_actor<
  // (password) -> encoded hash; errc::server_busy when the queue is full.
  caf::replies_to<hash_atom, std::string>::with<std::string>,
  // (encoded hash, password) -> whether they match.
  caf::replies_to<verify_atom, std::string, std::string>::with<bool>>;

} // namespace smsp
