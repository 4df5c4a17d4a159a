// IMQ actor: the incoming message queue, each entry tagged with its poster.
#include <map>
#include <set>
#include <unordered_map>

#include "actors/actors.hpp"
#include "actors/log.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

struct imq_entry {
  std::string poster;
  std::string text;
};

struct imq_state {
  timeouts limits;
  uint64_t next_seq = 0;
  /// Every queued message in posting order, including those being stored.
  std::map<uint64_t, imq_entry> queue;
  /// Per poster, the sequence numbers a STORE may still take. A message
  /// being stored is in `queue` but not here, so no second STORE takes it.
  std::unordered_map<std::string, std::set<uint64_t>> storable;
  static inline const char* name = "smsp.imq";
};

imq_actor::behavior_type imq(imq_actor::stateful_pointer<imq_state> self,
                             timeouts limits) {
  self->state.limits = limits;
  return {
    [=](post_atom, std::string& poster, std::string& text) {
      auto& st = self->state;
      auto seq = st.next_seq++;
      st.storable[poster].insert(seq);
      st.queue.emplace(seq, imq_entry{std::move(poster), std::move(text)});
      return caf::ok_atom::value;
    },
    [=](store_atom, const std::string& poster,
        mailbox_actor& target) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto mine = st.storable.find(poster);
      if (mine == st.storable.end())
        return errc::nothing_to_store;
      auto seq = *mine->second.rbegin();
      mine->second.erase(seq);
      if (mine->second.empty())
        st.storable.erase(mine);
      auto rp = self->make_response_promise<caf::ok_atom>();
      // The message leaves the queue only once the mailbox holds it; on
      // failure it becomes storable again at its old position.
      self
        ->request(target, st.limits.request, caf::put_atom::value,
                  st.queue.at(seq).text)
        .then(
          [=](caf::ok_atom) mutable {
            self->state.queue.erase(seq);
            rp.deliver(caf::ok_atom::value);
          },
          [=](caf::error& err) mutable {
            self->state.storable[poster].insert(seq);
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [=](dump_atom) {
      auto& st = self->state;
      std::string line =
        "DUMP imq: " + std::to_string(st.queue.size()) + " message(s)";
      size_t shown = 0;
      for (auto& [seq, entry] : st.queue) {
        if (shown++ == dump_texts)
          break;
        line += " [" + entry.poster + ": " + printable(entry.text) + "]";
      }
      log_line(line);
      return caf::ok_atom::value;
    },
  };
}

} // namespace

imq_actor spawn_imq(caf::actor_system& sys, timeouts limits) {
  return sys.spawn(imq, limits);
}

} // namespace smsp
