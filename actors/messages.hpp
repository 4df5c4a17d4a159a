// Every actor message: atoms, typed interfaces and the domain errors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "caf/atom.hpp"
#include "caf/error.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"

#include "actors/errc.hpp"
#include "actors/store/store.hpp"

namespace smsp {

// Protocol commands and the atoms that carry them to the registry. The atoms
// name the operation, not the wire word, where CAF 0.17 already has one
// (get_atom, delete_atom, ok_atom, tick_atom, idle_atom are CAF's own):
//
//   REGISTER -> register_atom     STORE  -> store_atom
//   LOGIN    -> login_atom        COUNT  -> count_atom
//   LOGOUT   -> logout_atom       GETMSG -> caf::get_atom
//   MESSAGE  -> post_atom         DELMSG -> caf::delete_atom
//   DUMP     -> dump_atom
using register_atom = caf::atom_constant<caf::atom("register")>;
using login_atom = caf::atom_constant<caf::atom("login")>;
using logout_atom = caf::atom_constant<caf::atom("logout")>;
using post_atom = caf::atom_constant<caf::atom("post")>;
using store_atom = caf::atom_constant<caf::atom("store")>;
using count_atom = caf::atom_constant<caf::atom("count")>;
using dump_atom = caf::atom_constant<caf::atom("dump")>;

// Between actors.
using hash_atom = caf::atom_constant<caf::atom("hash")>;
using verify_atom = caf::atom_constant<caf::atom("verify")>;
using move_atom = caf::atom_constant<caf::atom("move")>;
using commit_atom = caf::atom_constant<caf::atom("commit")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using lookup_atom = caf::atom_constant<caf::atom("lookup")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;

// Between a connection broker and the acceptor, which owns the server-wide
// budget of unsent reply bytes (net/acceptor.hpp): (grant, bytes) asks for
// more of it and is answered once it is free; (release, bytes) gives some
// back; (reclaim) asks a connection to give back what it holds beyond its
// present need.
using grant_atom = caf::atom_constant<caf::atom("grant")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using reclaim_atom = caf::atom_constant<caf::atom("reclaim")>;

/// A connection broker to itself: its last switch of reading took effect.
/// (It also sends itself caf::tick_atom to check its deadlines; the acceptor
/// sends it caf::idle_atom to check the idle rule.)
using settled_atom = caf::atom_constant<caf::atom("settled")>;

/// Lets CAF turn an errc into a caf::error implicitly.
caf::error make_error(errc code);

/// Lets CAF carry stored mail in messages.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_mail& x) {
  return f(caf::meta::type_name("stored_mail"), x.id, x.text);
}

/// The category atom of every smsp error.
constexpr caf::atom_value error_category = caf::atom("smsp");

/// The registry's figures, as DUMP shows them.
struct registry_figures {
  uint64_t sessions = 0;
  uint64_t active_mailboxes = 0;
  uint64_t activations = 0;
  uint64_t passivations = 0;
  uint64_t cached_accounts = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_figures& x) {
  return f(caf::meta::type_name("registry_figures"), x.sessions,
           x.active_mailboxes, x.activations, x.passivations,
           x.cached_accounts);
}

/// The durable store's writer: it owns the writable database and commits
/// every write waiting in its mailbox as one group (one fsync), answering
/// each request only after that commit. Requests to it carry no timeout on
/// purpose: a write's outcome must be known before memory may follow it.
using writer_actor = caf::typed_actor<
  // (name, hash) -> false when the name is taken.
  caf::replies_to<register_atom, std::string, std::string>::with<bool>,
  // (poster, text) -> IMQ id.
  caf::replies_to<post_atom, std::string, std::string>::with<uint64_t>,
  // (IMQ id, owner): moves that IMQ entry to the end of owner's mailbox ->
  // (mail id, text); errc::nothing_to_store when the entry is gone.
  caf::replies_to<move_atom, uint64_t, std::string>::with<uint64_t,
                                                          std::string>,
  // (mail id): removes a mailbox message.
  caf::replies_to<caf::delete_atom, uint64_t>::with<caf::ok_atom>,
  // -> (commits, writes) since start.
  caf::replies_to<stats_atom>::with<uint64_t, uint64_t>,
  // To itself: commit group number N, if still open.
  caf::reacts_to<commit_atom, uint64_t>>;

/// Reads of the durable store on a connection of its own, so they never
/// wait for the writer's fsync.
using reader_actor = caf::typed_actor<
  // (name) -> password hash; errc::no_such_user.
  caf::replies_to<lookup_atom, std::string>::with<std::string>,
  // (owner) -> the mailbox's messages, oldest first.
  caf::replies_to<load_atom, std::string>::with<std::vector<stored_mail>>>;

/// One user's FIFO of messages while the user is active: loaded from the
/// store when spawned, every change committed before it is acknowledged.
/// Only the registry (and the mailbox's successor) send to it.
using mailbox_actor = caf::typed_actor<
  // Number of waiting messages.
  caf::replies_to<count_atom>::with<uint64_t>,
  // Text of the oldest message, which stays; errc::mailbox_empty.
  caf::replies_to<caf::get_atom>::with<std::string>,
  // Removes the oldest message; errc::mailbox_empty.
  caf::replies_to<caf::delete_atom>::with<caf::ok_atom>,
  // (poster): moves the poster's most recent IMQ message here;
  // errc::nothing_to_store, mailbox_full.
  caf::replies_to<store_atom, std::string>::with<caf::ok_atom>,
  // Finishes the writes under way, answers, then stops (passivation).
  caf::replies_to<retire_atom>::with<caf::ok_atom>>;

/// The incoming message queue: the ids of queued texts per poster (the
/// texts stay in the store until STORE moves them).
using imq_actor = caf::typed_actor<
  // (poster, text): appends to the queue; errc::too_many_unstored.
  caf::replies_to<post_atom, std::string, std::string>::with<caf::ok_atom>,
  // (poster, owner): moves the poster's most recent message to the end of
  // owner's mailbox in the store -> (mail id, text); errc::nothing_to_store.
  caf::replies_to<store_atom, std::string, std::string>::with<uint64_t,
                                                              std::string>,
  // -> messages queued (being stored included).
  caf::replies_to<count_atom>::with<uint64_t>>;

/// Accounts, sessions and the directory of active mailboxes. Every request
/// of a connection goes to the registry, which checks the session and
/// delegates to the mailbox or the imq: the reply comes from there.
/// Requests from one sender thus reach each owner in the order sent.
using registry_actor = caf::typed_actor<
  // (username, password) -> cookie of a new session.
  // errc::user_exists, bad_username, bad_password, server_busy.
  caf::replies_to<register_atom, std::string, std::string>::with<std::string>,
  // (username, password, client address) -> cookie; errc::login_failed,
  // server_busy. A throttled attempt gets login_failed without hashing.
  caf::replies_to<login_atom, std::string, std::string,
                  std::string>::with<std::string>,
  // (cookie): ends the session; errc::not_logged_in.
  caf::replies_to<logout_atom, std::string>::with<caf::ok_atom>,
  // (cookie, text): posts to the imq as the cookie's user;
  // errc::not_logged_in, too_many_unstored.
  caf::replies_to<post_atom, std::string, std::string>::with<caf::ok_atom>,
  // (cookie, username): moves the caller's most recent imq message into
  // that user's mailbox; errc::not_logged_in, no_such_user,
  // nothing_to_store, mailbox_full.
  caf::replies_to<store_atom, std::string, std::string>::with<caf::ok_atom>,
  // (cookie, username): acts on the caller's own mailbox, which `username`
  // must name; errc::not_logged_in, not_your_mailbox, and for get and
  // delete mailbox_empty.
  caf::replies_to<count_atom, std::string, std::string>::with<uint64_t>,
  caf::replies_to<caf::get_atom, std::string, std::string>::with<std::string>,
  caf::replies_to<caf::delete_atom, std::string,
                  std::string>::with<caf::ok_atom>,
  // Hands its figures to the dumper, which logs them and the store.
  caf::replies_to<dump_atom>::with<caf::ok_atom>,
  // -> the registry's figures.
  caf::replies_to<stats_atom>::with<registry_figures>,
  // Passivates the mailboxes idle for too long. The registry sends it to
  // itself periodically; one from anyone else (a test) sweeps once.
  caf::reacts_to<caf::tick_atom>>;

/// Runs DUMP (see dump_config in spawn.hpp): logs the registry's figures
/// given with the request, the writer's, then the store's contents from one
/// read snapshot. Requests arriving while a run is under way or too soon
/// after one fold into the next run and are answered with it.
using dumper_actor = caf::typed_actor<
  caf::replies_to<dump_atom, registry_figures>::with<caf::ok_atom>,
  // To itself: start the next run if one is due.
  caf::reacts_to<caf::tick_atom>>;

/// Argon2id password hashing, run off the registry's thread.
using hasher_actor = caf::typed_actor<
  // (password) -> encoded hash; errc::server_busy when the queue is full.
  caf::replies_to<hash_atom, std::string>::with<std::string>,
  // (encoded hash, password) -> whether they match.
  caf::replies_to<verify_atom, std::string, std::string>::with<bool>>;

} // namespace smsp
