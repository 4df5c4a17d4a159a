// Domain errors of smsp-actors as CAF error values.
#include "actors/messages.hpp"

#include <cstdlib>

#include "actors/spawn.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/io/middleman_actor.hpp"

namespace smsp {

caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), error_category};
}

std::string smsp_version() {
  // Only for the test that a front and a node of different versions refuse
  // each other: no other way makes two versions from one build.
  if (auto fake = std::getenv("SMSP_ACTORS_TEST_VERSION"); fake && *fake)
    return fake;
  return SMSP_VERSION;
}

void add_message_types(caf::actor_system_config& cfg) {
  // Those that cross between front and node; the others are listed too, so
  // that a wrong or missing one shows as a name, not an RTTI string.
  cfg.add_message_type<stored_mail>("smsp.stored_mail")
    .add_message_type<std::vector<stored_mail>>("smsp.stored_mails")
    .add_message_type<std::vector<uint64_t>>("std::vector<uint64_t>")
    .add_message_type<node_figures>("smsp.node_figures")
    .add_message_type<node_status>("smsp.node_status")
    .add_message_type<mailbox_listing>("smsp.mailbox_listing")
    .add_message_type<std::vector<mailbox_listing>>("smsp.mailbox_listings")
    .add_message_type<node_listing>("smsp.node_listing")
    .add_message_type<std::vector<node_status>>("smsp.node_statuses")
    .add_message_type<registry_figures>("smsp.registry_figures")
    .add_message_type<mailbox_actor>("smsp.mailbox_actor")
    .add_message_type<node_actor>("smsp.node_actor")
    .add_message_type<node_listener>("smsp.node_listener");
}

} // namespace smsp
