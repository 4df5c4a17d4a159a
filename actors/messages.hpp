// Every actor message: atoms, typed interfaces and the domain errors.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "caf/atom.hpp"
#include "caf/error.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"

#include "actors/errc.hpp"
#include "actors/logic/metrics.hpp"
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

// A STORE to a mailbox of this process (see docs/ARCHITECTURE.md, "Order
// with many requests in flight"): the registry announces it to the target
// mailbox (expect_atom) and hands it to the IMQ, which asks the mailbox
// for the place announced (reserve_atom), commits the move and then gives
// the mailbox the mail (store_atom) or releases the place (cancel_atom).
// Each STORE has a ticket from the registry, increasing in arrival order.
using expect_atom = caf::atom_constant<caf::atom("expect")>;
using reserve_atom = caf::atom_constant<caf::atom("reserve")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;

// The exactly-once move of an IMQ entry to a mailbox on a node (see
// docs/ARCHITECTURE.md, "Exactly-once across processes"): the front claims
// the entry, the node applies it once per id, the front settles it, the
// node forgets it applied it. finish_atom re-sends the claimed moves of one
// owner; claimed_atom lists the owners that have some.
using claim_atom = caf::atom_constant<caf::atom("claim")>;
using unclaim_atom = caf::atom_constant<caf::atom("unclaim")>;
using apply_atom = caf::atom_constant<caf::atom("apply")>;
using settle_atom = caf::atom_constant<caf::atom("settle")>;
using forget_atom = caf::atom_constant<caf::atom("forget")>;
using prune_atom = caf::atom_constant<caf::atom("prune")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using claimed_atom = caf::atom_constant<caf::atom("claimed")>;

// Between the front and its mailbox nodes: hello_atom opens a link (it
// carries both versions), ping_atom is the link's heartbeat, node_atom tells
// the registry that a node went up or down.
using hello_atom = caf::atom_constant<caf::atom("hello")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using node_atom = caf::atom_constant<caf::atom("node")>;
using up_atom = caf::atom_constant<caf::atom("up")>;
using activate_atom = caf::atom_constant<caf::atom("activate")>;
using down_atom = caf::atom_constant<caf::atom("down")>;

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
/// A connection broker to itself: send the replies gathered since it was
/// posted, in one system call (see write_ready in net/connection.cpp).
using flush_atom = caf::atom_constant<caf::atom("flush")>;
/// The registry, to itself: a login penalty may have ended (for the log).
using penalty_atom = caf::atom_constant<caf::atom("penalty")>;

// metrics: the figures behind --metrics-port (app/metrics_http.hpp). Each
// owner counts its own and answers metrics_atom with them; connections
// report theirs to the metrics actor (report_atom, also a connection's
// own delayed reminder to report).
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;
using report_atom = caf::atom_constant<caf::atom("report")>;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, latency_histogram& x) {
  return f(caf::meta::type_name("latency_histogram"), x.buckets, x.sum_ns);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, request_counters& x) {
  return f(caf::meta::type_name("request_counters"), x.counts, x.latency);
}

/// What a connection broker reports to the metrics actor: its requests
/// since its last report and, in the report it sends as it closes, why.
struct connection_report {
  request_counters requests;
  /// The connection is gone; `reason` (a close_reason) says why.
  bool closed = false;
  uint8_t reason = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, connection_report& x) {
  return f(caf::meta::type_name("connection_report"), x.requests, x.closed,
           x.reason);
}

/// The metrics actor's sums of every connection's reports since start.
struct connection_totals {
  request_counters requests;
  /// Connections closed, by close_reason.
  std::array<uint64_t, close_reason_count> closed{};
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, connection_totals& x) {
  return f(caf::meta::type_name("connection_totals"), x.requests, x.closed);
}

/// Owns the per-request figures of all connections, summed from their
/// reports (each connection sends at most about one a second while busy,
/// and one as it closes).
using metrics_actor
  = caf::typed_actor<caf::reacts_to<report_atom, connection_report>,
                     // -> the sums since start.
                     caf::replies_to<metrics_atom>::with<connection_totals>>;

/// The acceptor's connection figures.
struct acceptor_figures {
  /// Connections served now.
  uint64_t open = 0;
  /// Since start: accepted, and refused with `KO server busy`.
  uint64_t accepted = 0;
  uint64_t refused_busy = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, acceptor_figures& x) {
  return f(caf::meta::type_name("acceptor_figures"), x.open, x.accepted,
           x.refused_busy);
}

/// The part of the acceptor broker's interface that the metrics endpoint
/// asks (the acceptor is a dynamically typed broker; listen() hands out
/// this view of it, so a wrong message to it is still a compile error).
using acceptor_metrics_actor
  = caf::typed_actor<caf::replies_to<metrics_atom>::with<acceptor_figures>>;

/// The store writer's figures since start.
struct writer_figures {
  /// Group commits, and the writes they committed.
  uint64_t commits = 0;
  uint64_t writes = 0;
  /// Seconds from a group's first write to the end of its commit.
  latency_histogram commit_latency;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, writer_figures& x) {
  return f(caf::meta::type_name("writer_figures"), x.commits, x.writes,
           x.commit_latency);
}

/// The password hashing pool's figures.
struct hasher_figures {
  /// Hashes waiting for a worker now, and workers busy now (of `workers`).
  uint64_t queued = 0;
  uint64_t busy = 0;
  uint64_t workers = 0;
  /// Seconds a worker took per hash or verification, since start.
  latency_histogram hash_time;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hasher_figures& x) {
  return f(caf::meta::type_name("hasher_figures"), x.queued, x.busy, x.workers,
           x.hash_time);
}

/// The login throttle's penalties.
struct throttle_figures {
  /// Penalty windows open now (per address, pair or username record).
  uint64_t active = 0;
  /// Penalty windows opened since start.
  uint64_t total = 0;
  /// LOGINs refused without hashing since start.
  uint64_t refused = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, throttle_figures& x) {
  return f(caf::meta::type_name("throttle_figures"), x.active, x.total,
           x.refused);
}
// admin tool: the messages behind smsp-admin's commands (net/admin.cpp, the
// admin listener; docs/OPERATIONS.md, "The admin tool"). users_atom lists
// accounts by glob, sessions_atom the users with a live session, kick_atom
// ends one, passwd_atom sets a password (hash), purge_atom deletes a user
// with its mail and unstored posts, totals_atom counts the store's rows,
// conns_atom asks the acceptor for its live connections.
using users_atom = caf::atom_constant<caf::atom("users")>;
using sessions_atom = caf::atom_constant<caf::atom("sessions")>;
using kick_atom = caf::atom_constant<caf::atom("kick")>;
using passwd_atom = caf::atom_constant<caf::atom("passwd")>;
using purge_atom = caf::atom_constant<caf::atom("purge")>;
using totals_atom = caf::atom_constant<caf::atom("totals")>;
using conns_atom = caf::atom_constant<caf::atom("conns")>;

/// Lets CAF turn an errc into a caf::error implicitly.
caf::error make_error(errc code);

/// Lets CAF carry stored mail in messages.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_mail& x) {
  return f(caf::meta::type_name("stored_mail"), x.id, x.text);
}

/// One mailbox as DUMP lists it.
struct mailbox_listing {
  std::string owner;
  uint64_t count = 0;
  /// The first texts, oldest first.
  std::vector<std::string> texts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, mailbox_listing& x) {
  return f(caf::meta::type_name("mailbox_listing"), x.owner, x.count, x.texts);
}

/// What a node's store holds, for the front's DUMP: bounded by the
/// request's numbers of mailboxes and texts.
struct node_listing {
  /// Messages in all the node's mailboxes.
  uint64_t mail = 0;
  /// The first mailboxes with mail, by owner.
  std::vector<mailbox_listing> mailboxes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_listing& x) {
  return f(caf::meta::type_name("node_listing"), x.mail, x.mailboxes);
}

/// The category atom of every smsp error.
constexpr caf::atom_value error_category = caf::atom("smsp");

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
  // Front: (IMQ id, owner) claims the entry for a move to owner's mailbox on
  // a node -> its text (again, for a repeated claim by the same owner);
  // errc::nothing_to_store when the entry is gone or claimed for another.
  caf::replies_to<claim_atom, uint64_t, std::string>::with<std::string>,
  // Front: (IMQ id) the node refused the move: the entry is storable again.
  caf::replies_to<unclaim_atom, uint64_t>::with<caf::ok_atom>,
  // Front: (IMQ id) the node applied the move: removes entry and claim.
  caf::replies_to<settle_atom, uint64_t>::with<caf::ok_atom>,
  // Node: (origin, IMQ id, owner, text) appends to owner's mailbox at most
  // once per (origin, IMQ id) -> the new mail's id, or 0 when it was
  // applied before (even if that mail has been deleted since).
  caf::replies_to<apply_atom, std::string, uint64_t, std::string,
                  std::string>::with<uint64_t>,
  // Node: (origin, IMQ id) the front settled it: forget it was applied.
  caf::replies_to<forget_atom, std::string, uint64_t>::with<caf::ok_atom>,
  // Node: (origin, owner, ids still claimed at the front) forgets owner's
  // other applied ids -> how many were forgotten.
  caf::replies_to<prune_atom, std::string, std::string,
                  std::vector<uint64_t>>::with<uint64_t>,
  // -> (commits, writes) since start.
  caf::replies_to<stats_atom>::with<uint64_t, uint64_t>,
  // admin tool: (name) removes the account, its mailbox and its storable
  // IMQ posts in one transaction -> (mail removed, IMQ posts removed);
  // errc::no_such_user.
  caf::replies_to<purge_atom, std::string>::with<uint64_t, uint64_t>,
  // admin tool: (name, hash) replaces the password hash; errc::no_such_user.
  caf::replies_to<passwd_atom, std::string, std::string>::with<caf::ok_atom>,
  // To itself: commit group number N, if still open.
  caf::reacts_to<commit_atom, uint64_t>,
  // -> its figures, commit latency included.
  caf::replies_to<metrics_atom>::with<writer_figures>>;

/// Reads of the durable store on a connection of its own, so they never
/// wait for the writer's fsync.
using reader_actor = caf::typed_actor<
  // (name) -> password hash; errc::no_such_user.
  caf::replies_to<lookup_atom, std::string>::with<std::string>,
  // (owner) -> the mailbox's messages, oldest first.
  caf::replies_to<load_atom, std::string>::with<std::vector<stored_mail>>,
  // -> moves applied on this node whose settling the front has not yet
  // confirmed (see node_figures::applied).
  caf::replies_to<stats_atom>::with<uint64_t>,
  // (texts, mailboxes): a node's part of a DUMP (see node_listing).
  caf::replies_to<dump_atom, uint64_t, uint64_t>::with<node_listing>,
  // admin tool: (glob, as SQLite's GLOB: * ? [...]) -> matching account
  // names, sorted bytewise.
  caf::replies_to<users_atom, std::string>::with<std::vector<std::string>>,
  // admin tool: -> (accounts, mailbox messages, IMQ messages) committed.
  caf::replies_to<totals_atom>::with<uint64_t, uint64_t, uint64_t>>;

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
  // A mailbox of the front, from the registry: (ticket) a STORE to this
  // mailbox is on its way through the IMQ. A place is kept for it if the
  // mailbox is not full, and the COUNT, GETMSG and DELMSG that arrive after
  // it wait until its mail is here or its move failed.
  caf::reacts_to<expect_atom, uint64_t>,
  // From the IMQ: (ticket) is its place kept? errc::mailbox_full.
  caf::replies_to<reserve_atom, uint64_t>::with<caf::ok_atom>,
  // From the IMQ: (ticket, mail id, text) the move committed: the mail
  // joins the FIFO. (ticket) alone, with cancel_atom: nothing comes.
  caf::reacts_to<store_atom, uint64_t, uint64_t, std::string>,
  caf::reacts_to<cancel_atom, uint64_t>,
  // (IMQ id, text, first attempt): a message moved here from the front's
  // IMQ (a mailbox on a node), appended at most once per IMQ id; a repeated
  // one is acknowledged and changes nothing. errc::mailbox_full, for a first
  // attempt only.
  caf::replies_to<apply_atom, uint64_t, std::string, bool>::with<caf::ok_atom>,
  // (IMQ id): the front has settled that move; the record of it goes.
  caf::reacts_to<forget_atom, uint64_t>,
  // (IMQ ids the front still has claimed for this owner): forgets the
  // records of every other move applied here.
  caf::replies_to<prune_atom, std::vector<uint64_t>>::with<caf::ok_atom>,
  // Finishes the writes under way, answers, then stops (passivation).
  caf::replies_to<retire_atom>::with<caf::ok_atom>>;

/// What a mailbox node says about itself, in its reply to hello and ping.
struct node_figures {
  /// smsp-actors' version on the node.
  std::string version;
  /// The node's store id (a new data dir has a new one).
  std::string store_id;
  /// Mailboxes active on the node now.
  uint64_t mailboxes = 0;
  /// Moves applied there and not yet settled by the front.
  uint64_t applied = 0;
  /// The node's group commits and writes since it started.
  uint64_t commits = 0;
  uint64_t writes = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_figures& x) {
  return f(caf::meta::type_name("node_figures"), x.version, x.store_id,
           x.mailboxes, x.applied, x.commits, x.writes);
}

/// A mailbox node's host, the one actor a node publishes on its port. The
/// front's link to the node talks to it; mailboxes are spawned on the node
/// by remote_spawn (actor type node_mailbox_type in spawn.hpp).
using node_actor = caf::typed_actor<
  // (front's version, front's store id, front's link actor): opens a link
  // -> the node's figures. A front of another version is refused with an
  // error naming both versions. When the last link of a front goes down
  // (it stopped or lost the connection), the node retires the mailboxes
  // that front spawned.
  caf::replies_to<hello_atom, std::string, std::string,
                  caf::actor>::with<node_figures>,
  // The link's heartbeat -> the node's figures.
  caf::replies_to<ping_atom>::with<node_figures>,
  // (texts, mailboxes): the node's part of a DUMP, from its store.
  caf::replies_to<dump_atom, uint64_t, uint64_t>::with<node_listing>,
  // From a mailbox spawned on the node: (owner, the front's store id,
  // itself) -> that owner's previous mailbox here, if any, which it retires
  // before loading.
  caf::replies_to<activate_atom, std::string, std::string,
                  mailbox_actor>::with<mailbox_actor>,
  // To itself: return the memory of stopped mailboxes to the system.
  caf::reacts_to<caf::tick_atom>>;

/// The incoming message queue: the ids of queued texts per poster (the
/// texts stay in the store until STORE moves them).
using imq_actor = caf::typed_actor<
  // (poster, text): appends to the queue; errc::too_many_unstored.
  caf::replies_to<post_atom, std::string, std::string>::with<caf::ok_atom>,
  // (poster, owner, ticket, owner's mailbox in this process): moves the
  // poster's most recent message that arrived before this STORE to the end
  // of owner's mailbox, once the mailbox kept a place for it (announced by
  // the registry with expect_atom). A poster's STOREs take their messages
  // in arrival order. A null mailbox: the registry is still looking owner
  // up and sends (ticket, mailbox) or (ticket, error) when it knows.
  // errc::nothing_to_store, mailbox_full, no_such_user.
  caf::replies_to<store_atom, std::string, std::string, uint64_t,
                  mailbox_actor>::with<caf::ok_atom>,
  caf::reacts_to<store_atom, uint64_t, mailbox_actor>,
  caf::reacts_to<store_atom, uint64_t, caf::error>,
  // (poster, owner, owner's mailbox on a node): moves the poster's most
  // recent message there exactly once: claim, apply, settle.
  // errc::nothing_to_store, mailbox_full, mailbox_unavailable (the claim
  // then stays and finish_atom completes it).
  caf::replies_to<store_atom, std::string, std::string,
                  mailbox_actor>::with<caf::ok_atom>,
  // (owner, owner's newly activated mailbox on a node): completes owner's
  // claimed moves in claim order; errc::mailbox_unavailable.
  caf::replies_to<finish_atom, std::string, mailbox_actor>::with<caf::ok_atom>,
  // -> the owners with claimed moves not yet settled.
  caf::replies_to<claimed_atom>::with<std::vector<std::string>>,
  // -> messages queued (being stored included).
  caf::replies_to<count_atom>::with<uint64_t>,
  // admin tool: (user) once the user's posts and STOREs under way are done,
  // removes the account, its mailbox and its IMQ posts in one transaction
  // (the writer's purge) and forgets the posts -> (mail removed, IMQ posts
  // removed); errc::no_such_user, user_on_node (posts claimed for a node).
  caf::replies_to<purge_atom, std::string>::with<uint64_t, uint64_t>>;

/// One mailbox node as the front sees it (DUMP shows these).
struct node_status {
  /// host:port as given with --mailbox-node.
  std::string address;
  bool up = false;
  /// Milliseconds since the node last answered a heartbeat; -1: never.
  int64_t heartbeat_age_ms = -1;
  /// Accounts placed on the node, and their mailboxes active now (both
  /// filled in by the registry).
  uint64_t users_placed = 0;
  uint64_t active_mailboxes = 0;
  /// Why the node is down, or what last went wrong.
  std::string why;
  /// What the node said at its last heartbeat.
  node_figures node;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_status& x) {
  return f(caf::meta::type_name("node_status"), x.address, x.up,
           x.heartbeat_age_ms, x.users_placed, x.active_mailboxes, x.why,
           x.node);
}

/// The registry's figures, as DUMP shows them.
struct registry_figures {
  uint64_t sessions = 0;
  uint64_t active_mailboxes = 0;
  uint64_t activations = 0;
  uint64_t passivations = 0;
  uint64_t cached_accounts = 0;
  /// The mailbox nodes, in the order given; empty when all mailboxes are
  /// in the front.
  std::vector<node_status> nodes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_figures& x) {
  return f(caf::meta::type_name("registry_figures"), x.sessions,
           x.active_mailboxes, x.activations, x.passivations, x.cached_accounts,
           x.nodes);
}

/// Who hears that a node went up or down (the registry): (node, up|down,
/// index of the node in the front's list).
using node_listener
  = caf::typed_actor<caf::reacts_to<node_atom, up_atom, uint64_t>,
                     caf::reacts_to<node_atom, down_atom, uint64_t>>;

/// The front's link to one mailbox node: connects (with capped backoff),
/// checks the version, sends heartbeats, spawns mailboxes there.
using node_link_actor = caf::typed_actor<
  // (owner, most messages the mailbox may hold) -> owner's mailbox, spawned
  // on the node by remote spawn; errc::mailbox_unavailable when the node is
  // down or does not answer in time.
  caf::replies_to<caf::spawn_atom, std::string, uint64_t>::with<mailbox_actor>,
  // -> the node's status (users_placed and active_mailboxes left 0).
  caf::replies_to<stats_atom>::with<node_status>,
  // (texts, mailboxes): the node's part of a DUMP;
  // errc::mailbox_unavailable when the node is down.
  caf::replies_to<dump_atom, uint64_t, uint64_t>::with<node_listing>,
  // (node_atom, listener): tells the link whom to tell about up and down.
  caf::reacts_to<node_atom, node_listener>,
  // To itself: heartbeat or reconnect, whichever is due.
  caf::reacts_to<caf::tick_atom>>;

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
  // admin tool (docs/OPERATIONS.md, "The admin tool"):
  // -> the users with a live session, sorted.
  caf::replies_to<sessions_atom>::with<std::vector<std::string>>,
  // (username): ends that user's session; errc::not_logged_in if none.
  caf::replies_to<kick_atom, std::string>::with<caf::ok_atom>,
  // (username, new password): hashes it (hasher), stores it durably, then
  // ends the user's session; errc::no_such_user, bad_password, server_busy,
  // change_under_way.
  caf::replies_to<passwd_atom, std::string, std::string>::with<caf::ok_atom>,
  // (username): ends the session, retires the mailbox, then removes the
  // account, its mail and its unstored posts in one transaction -> (mail
  // removed, IMQ posts removed); errc::no_such_user, user_on_node (with
  // mailbox nodes), change_under_way.
  caf::replies_to<purge_atom, std::string>::with<uint64_t, uint64_t>,
  // Passivates the mailboxes idle for too long. The registry sends it to
  // itself periodically; one from anyone else (a test) sweeps once.
  caf::reacts_to<caf::tick_atom>,
  // From a node link: node N went up (its users' unfinished moves are
  // completed) or down (its users' mailboxes are forgotten).
  caf::reacts_to<node_atom, up_atom, uint64_t>,
  caf::reacts_to<node_atom, down_atom, uint64_t>,
  // To itself, when the penalty window opened by a failed LOGIN of
  // (username, address) is over: logs that the penalty ended, unless a
  // later failure extended it.
  caf::reacts_to<penalty_atom, std::string, std::string>,
  // -> the registry's figures (as stats_atom) and its login throttle's.
  caf::replies_to<metrics_atom>::with<registry_figures, throttle_figures>>;

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
  caf::replies_to<verify_atom, std::string, std::string>::with<bool>,
  // -> the pool's figures.
  caf::replies_to<metrics_atom>::with<hasher_figures>>;

/// One worker of the hashing pool (hasher_actor without the figures).
using hash_worker_actor = caf::typed_actor<
  caf::replies_to<hash_atom, std::string>::with<std::string>,
  caf::replies_to<verify_atom, std::string, std::string>::with<bool>>;

} // namespace smsp
