// Domain errors of smsp-actors as CAF error values.
#include "actors/messages.hpp"

namespace smsp {

caf::error make_error(errc code) {
  return caf::error{static_cast<uint8_t>(code), error_category};
}

} // namespace smsp
