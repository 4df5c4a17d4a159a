// Mailbox placement over mailbox nodes: rendezvous hashing, the node list.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace smsp {

// -- node addresses -----------------------------------------------------------

/// A mailbox node's address as given on the command line (--mailbox-node).
struct node_address {
  /// A host name or a numeric address, IPv6 without brackets. ASCII letters
  /// in lower case (see parse_node_address).
  std::string host;
  /// 1-65535.
  uint16_t port = 0;
};

bool operator==(const node_address& a, const node_address& b);
bool operator!=(const node_address& a, const node_address& b);

/// "host:port", or "[host]:port" for a host containing ':' (IPv6). This text
/// is the node's identity in rendezvous_place and in the node list file.
std::string to_string(const node_address& x);

/// Parses "host:port" or "[ipv6]:port". The port is 1-65535 in decimal digits
/// only (no sign, no spaces). The host is non-empty, at most 255 bytes, with
/// no spaces, control characters, '#', '[', ']' or '/'; it contains ':' if
/// and only if it is bracketed, so that the last ':' always starts the port.
/// ASCII letters in the host are folded to lower case: host names and IPv6
/// hex digits are case-insensitive, and "Node1:5000" and "node1:5000" must
/// be one node, with one placement, not two. On failure returns nullopt and,
/// if `why` is not null, sets it to a sentence quoting `text`.
std::optional<node_address> parse_node_address(std::string_view text,
                                               std::string* why = nullptr);

/// Why `nodes` cannot be used, or nullopt: an address given twice, which
/// would make two "nodes" share one process (and tie every weight).
std::optional<std::string>
check_node_list(const std::vector<node_address>& nodes);

// -- rendezvous hashing -------------------------------------------------------

/// The weight of `node` for `user`: FNV-1a 64 over the bytes of
/// to_string(node), one '\0', and the bytes of `user`, then the splitmix64
/// finalizer over that (FNV-1a alone mixes its last bytes poorly, and the
/// user name comes last). Part of the on-disk contract, like the node list
/// file: mail lives where this placed it, so changing this function (or
/// to_string) moves users without moving their mail.
uint64_t placement_weight(const node_address& node, std::string_view user);

/// Rendezvous (highest-random-weight) hashing: the index in `nodes` of the
/// node with the highest placement_weight for `user`. Throws
/// std::invalid_argument for an empty `nodes` (an empty list means "in the
/// front", which the caller decides).
///
/// The result depends on the set of nodes, not on their order: each weight
/// depends on one node and the user only. The one exception is a tie of two
/// weights, broken by the lower index; two distinct addresses tie for a user
/// only on a 64-bit hash collision. Adding a node moves only the users whose
/// weight for the new node beats all the old ones (about 1/(n+1) of them),
/// and each of them to the new node; removing one moves only its own users.
size_t rendezvous_place(std::string_view user,
                        const std::vector<node_address>& nodes);

// -- the node list file -------------------------------------------------------

/// Name of the node list file in a data dir.
inline constexpr const char* node_list_file = "mailbox-nodes";

/// Reads DIR/mailbox-nodes: a comment line saying what the file is, then one
/// address per line in to_string form. Lines starting with '#' and empty
/// lines are skipped. An empty list (comment only) means all mailboxes are in
/// the front. Returns nullopt when the file does not exist (a data dir that
/// never recorded a list); throws std::runtime_error naming the file, and
/// the line if any, when it cannot be read, is malformed or repeats an
/// address.
std::optional<std::vector<node_address>>
load_node_list(const std::string& data_dir);

/// Writes `nodes` to DIR/mailbox-nodes atomically: a temp file in DIR,
/// fsynced, renamed over the old one, then DIR fsynced, so that a crash
/// leaves the old list or the new one. Throws std::runtime_error naming the
/// file on failure, or when check_node_list refuses `nodes`.
void save_node_list(const std::string& data_dir,
                    const std::vector<node_address>& nodes);

// -- changing the node list ---------------------------------------------------

/// Users whose placement differs between two node lists.
struct placement_change {
  /// How many users would move.
  uint64_t moved = 0;
  /// The first of them, in the order the users were given.
  std::vector<std::string> first;
};

/// Compares the placement of each of `users` under `before` and `after`
/// (each an empty list for "in the front", else as for rendezvous_place).
/// A user moves when the node address differs, not the index: reordering a
/// list moves no one. Keeps at most `first_n` names.
placement_change compare_placement(const std::vector<std::string>& users,
                                   const std::vector<node_address>& before,
                                   const std::vector<node_address>& after,
                                   size_t first_n = 5);

/// The sentence the front prints when it refuses a changed node list, e.g.
/// "the mailbox nodes differ from the ones recorded in DIR/mailbox-nodes
/// (recorded: a:1, b:1; given: a:1, c:1): 1234 of 5000 users would move to
/// another node, e.g. alice, bob, carol; their mail would not follow them
/// (see OPERATIONS.md, 'Changing the node list'); start with
/// --accept-node-change to accept this". `file` is the node list file's path,
/// `users` the number of users compared.
std::string describe_node_change(const std::string& file,
                                 const std::vector<node_address>& before,
                                 const std::vector<node_address>& after,
                                 const placement_change& change,
                                 uint64_t users);

} // namespace smsp
