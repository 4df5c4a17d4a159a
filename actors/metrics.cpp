// The metrics actor: sums the request figures the connections report.
#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct metrics_state {
  /// Every connection's reports since start, summed.
  connection_totals totals;
  static inline const char* name = "smsp.metrics";
};

metrics_actor::behavior_type
metrics(metrics_actor::stateful_pointer<metrics_state> self) {
  return {
    [=](report_atom, const connection_report& report) {
      auto& totals = self->state.totals;
      totals.requests.merge(report.requests);
      if (report.closed && report.reason < close_reason_count)
        ++totals.closed[report.reason];
    },
    [=](metrics_atom) { return self->state.totals; },
  };
}

} // namespace

metrics_actor spawn_metrics(caf::actor_system& sys) {
  return sys.spawn(metrics);
}

} // namespace smsp
