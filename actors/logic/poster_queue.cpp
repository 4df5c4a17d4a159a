// One poster's entries on the IMQ and the order in which STOREs take them.
#include "actors/logic/poster_queue.hpp"

#include <iterator>
#include <utility>

namespace smsp {

uint64_t poster_queue::post_arrived() {
  unsettled_.insert(++arrivals_);
  return arrivals_;
}

void poster_queue::post_settled(uint64_t arrival, uint64_t id) {
  unsettled_.erase(arrival);
  if (id != 0)
    storable_.emplace(id, arrival);
}

void poster_queue::add_committed(uint64_t id) {
  storable_.emplace(id, 0);
}

uint64_t poster_queue::store_arrived() {
  ++stores_arrived_;
  return arrivals_;
}

void poster_queue::store_settled() {
  ++stores_settled_;
}

bool poster_queue::posts_settled_through(uint64_t bound) const {
  return unsettled_.empty() || *unsettled_.begin() > bound;
}

poster_queue::entry poster_queue::take_latest(uint64_t bound) {
  // Ids grow with arrival (the writer commits posts in the order asked), so
  // the first from the back within the bound is the most recent one.
  for (auto i = storable_.rbegin(); i != storable_.rend(); ++i) {
    if (i->second <= bound) {
      entry e{i->first, i->second};
      storable_.erase(std::next(i).base());
      ++storing_;
      return e;
    }
  }
  return {};
}

void poster_queue::moved() {
  --storing_;
}

void poster_queue::put_back(entry e) {
  --storing_;
  storable_.emplace(e.id, e.arrival);
}

std::map<uint64_t, uint64_t> poster_queue::take_all() {
  return std::exchange(storable_, {});
}

void poster_queue::put_back_all(const std::map<uint64_t, uint64_t>& entries) {
  storable_.insert(entries.begin(), entries.end());
}

} // namespace smsp
