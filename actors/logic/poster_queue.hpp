// One poster's entries on the IMQ and the order in which STOREs take them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>

namespace smsp {

/// The IMQ's bookkeeping for one poster, so that the poster's MESSAGEs and
/// STOREs take effect in the order they arrived while many are under way.
/// Plain C++; the IMQ actor owns one per poster.
///
/// Every post gets an arrival number when it arrives and *settles* when
/// its commit is answered (committed or failed). A STORE notes the last
/// arrival number before it (its bound): it may take only a post that
/// arrived up to there, and only once all of those have settled. Then it
/// takes the most recent committed one. So a MESSAGE sent after a STORE is
/// never the one that STORE takes, even when both are committing at once.
///
/// STOREs also count their arrivals and settlements (a STORE settles when
/// its move commits or it fails), so that a post over the per-poster limit
/// can wait for the STOREs before it, each of which may free a place (see
/// must_wait_for_stores).
class poster_queue {
public:
  /// A committed post that a STORE may take.
  struct entry {
    uint64_t id = 0;
    /// Its post's arrival number; 0 for an entry loaded at start.
    uint64_t arrival = 0;
  };

  // -- posts ------------------------------------------------------------------

  /// A post arrives: its arrival number. It counts as under way until
  /// post_settled.
  uint64_t post_arrived();

  /// Post `arrival` was committed as IMQ id `id`, or failed (`id` 0).
  void post_settled(uint64_t arrival, uint64_t id);

  /// A committed entry whose post was not numbered here: loaded at start,
  /// or back from a claim for a node that refused it.
  void add_committed(uint64_t id);

  /// Posts arrived and not yet settled.
  size_t posting() const {
    return unsettled_.size();
  }

  // -- STOREs -----------------------------------------------------------------

  /// A STORE arrives: its bound (see the class comment).
  uint64_t store_arrived();

  /// A STORE that store_arrived counted has settled.
  void store_settled();

  /// Whether every post that arrived up to `bound` has settled.
  bool posts_settled_through(uint64_t bound) const;

  /// Takes the most recent committed entry whose post arrived up to
  /// `bound`; it then counts as storing until moved() or put_back(). An
  /// entry with id 0: there is none.
  entry take_latest(uint64_t bound);

  /// Takes the most recent committed entry, whatever its arrival.
  entry take_latest() {
    return take_latest(arrivals_);
  }

  /// A taken entry's move committed: it is gone.
  void moved();

  /// A taken entry's move failed: it is storable again, in its place.
  void put_back(entry e);

  // -- the per-poster limit ---------------------------------------------------

  /// Entries counted against the per-poster limit: committed, taken and not
  /// yet moved, claimed for a node, and posts under way.
  size_t total() const {
    return storable_.size() + storing_ + claimed + posting();
  }

  /// A post that arrived when `stores_before` STOREs had arrived (see
  /// stores_arrived) finds the poster at the limit: whether it must wait
  /// for those STOREs to settle before it is refused (each may free a
  /// place) rather than be refused now.
  bool must_wait_for_stores(uint64_t stores_before) const {
    return stores_settled_ < stores_before;
  }

  /// STOREs arrived so far (store_arrived calls).
  uint64_t stores_arrived() const {
    return stores_arrived_;
  }

  // -- the rest ---------------------------------------------------------------

  /// Committed entries, oldest first.
  const std::map<uint64_t, uint64_t>& storable() const {
    return storable_;
  }

  /// Takes every committed entry (a purge); put_back_all undoes it.
  std::map<uint64_t, uint64_t> take_all();
  void put_back_all(const std::map<uint64_t, uint64_t>& entries);

  /// Entries claimed for a move to a node, not yet settled. The IMQ counts
  /// them here for total().
  size_t claimed = 0;

  /// Entries taken by take_latest and not yet moved or put back.
  size_t storing() const {
    return storing_;
  }

  /// Nothing committed, taken, claimed or under way.
  bool empty() const {
    return total() == 0 && stores_arrived_ == stores_settled_;
  }

private:
  /// IMQ id -> arrival number of its post.
  std::map<uint64_t, uint64_t> storable_;
  /// Arrival numbers of posts not yet settled.
  std::set<uint64_t> unsettled_;
  uint64_t arrivals_ = 0;
  size_t storing_ = 0;
  uint64_t stores_arrived_ = 0;
  uint64_t stores_settled_ = 0;
};

} // namespace smsp
