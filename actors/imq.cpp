// IMQ actor: the incoming message queue's index; the texts live in the store.
#include <set>
#include <unordered_map>

#include "actors/spawn.hpp"
#include "caf/all.hpp"

namespace smsp {

namespace {

/// One poster's queued messages.
struct poster_queue {
  /// Committed ids a STORE may take, oldest first. An id being stored is
  /// not here, so no second STORE takes it.
  std::set<uint64_t> storable;
  /// Posts and STOREs waiting for their commit.
  size_t posting = 0;
  size_t storing = 0;
  /// STOREs that arrived while posts were waiting for their commit.
  std::vector<
    std::pair<std::string, caf::typed_response_promise<uint64_t, std::string>>>
    waiting;

  size_t total() const {
    return storable.size() + posting + storing;
  }
};

struct imq_state {
  writer_actor writer;
  mail_limits mail;
  /// Invariant: no poster here has total() == 0.
  std::unordered_map<std::string, poster_queue> posters;
  uint64_t queued = 0;
  static inline const char* name = "smsp.imq";
};

using imq_pointer = imq_actor::stateful_pointer<imq_state>;

using store_promise = caf::typed_response_promise<uint64_t, std::string>;

void forget_if_empty(imq_pointer self, const std::string& poster) {
  auto& posters = self->state.posters;
  if (auto i = posters.find(poster);
      i != posters.end() && i->second.total() == 0)
    posters.erase(i);
}

/// Moves the poster's most recent committed message to `owner`'s mailbox.
void start_store(imq_pointer self, const std::string& poster,
                 const std::string& owner, store_promise rp) {
  auto& st = self->state;
  auto mine = st.posters.find(poster);
  if (mine == st.posters.end() || mine->second.storable.empty()) {
    rp.deliver(make_error(errc::nothing_to_store));
    return;
  }
  auto id = *mine->second.storable.rbegin();
  mine->second.storable.erase(id);
  ++mine->second.storing;
  // One transaction removes the entry and appends it to the mailbox.
  self->request(st.writer, caf::infinite, move_atom::value, id, owner)
    .then(
      [=](uint64_t mail_id, std::string& text) mutable {
        --self->state.posters[poster].storing;
        --self->state.queued;
        forget_if_empty(self, poster);
        rp.deliver(mail_id, std::move(text));
      },
      [=](caf::error& err) mutable {
        auto& mine = self->state.posters[poster];
        --mine.storing;
        // Not committed: the message is storable again, in its place.
        mine.storable.insert(id);
        rp.deliver(std::move(err));
      });
}

/// After a post's commit: runs the STOREs that waited for the poster's
/// posts, once none is under way.
void post_done(imq_pointer self, const std::string& poster) {
  auto& mine = self->state.posters[poster];
  --mine.posting;
  if (mine.posting == 0 && !mine.waiting.empty()) {
    auto waiting = std::move(mine.waiting);
    mine.waiting.clear();
    for (auto& [owner, rp] : waiting)
      start_store(self, poster, owner, rp);
  }
  forget_if_empty(self, poster);
}

imq_actor::behavior_type imq(imq_pointer self, writer_actor writer,
                             std::vector<queued_message> queued,
                             mail_limits mail) {
  auto& st = self->state;
  st.writer = std::move(writer);
  st.mail = mail;
  for (auto& msg : queued)
    st.posters[msg.poster].storable.insert(msg.id);
  st.queued = queued.size();
  return {
    [=](post_atom, const std::string& poster,
        const std::string& text) -> caf::result<caf::ok_atom> {
      auto& st = self->state;
      auto& mine = st.posters[poster];
      if (mine.total() >= st.mail.max_imq_per_user) {
        forget_if_empty(self, poster);
        return make_error(errc::too_many_unstored);
      }
      ++mine.posting;
      ++st.queued;
      auto rp = self->make_response_promise<caf::ok_atom>();
      // Without a timeout: the commit's outcome must be known (see
      // writer_actor); the connection bounds its client's wait.
      self->request(st.writer, caf::infinite, post_atom::value, poster, text)
        .then(
          [=](uint64_t id) mutable {
            self->state.posters[poster].storable.insert(id);
            rp.deliver(caf::ok_atom::value);
            post_done(self, poster);
          },
          [=](caf::error& err) mutable {
            --self->state.queued;
            rp.deliver(std::move(err));
            post_done(self, poster);
          });
      return rp;
    },
    [=](store_atom, const std::string& poster,
        const std::string& owner) -> caf::result<uint64_t, std::string> {
      auto& st = self->state;
      auto mine = st.posters.find(poster);
      if (mine == st.posters.end())
        return make_error(errc::nothing_to_store);
      auto rp = self->make_response_promise<uint64_t, std::string>();
      if (mine->second.posting > 0)
        // A STORE may overtake the poster's MESSAGE on its way here (it
        // travels through the target mailbox): it takes effect after the
        // posts under way, as their poster sent it.
        mine->second.waiting.emplace_back(owner, rp);
      else
        start_store(self, poster, owner, rp);
      return rp;
    },
    [=](count_atom) { return self->state.queued; },
  };
}

} // namespace

imq_actor spawn_imq(caf::actor_system& sys, writer_actor writer,
                    std::vector<queued_message> queued, mail_limits mail) {
  return sys.spawn(imq, std::move(writer), std::move(queued), mail);
}

} // namespace smsp
