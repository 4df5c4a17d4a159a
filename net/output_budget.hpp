// The server-wide budget of outstanding reply bytes: who holds how much, and
// who waits for more (plain C++; the acceptor owns one).
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <map>
#include <utility>
#include <vector>

namespace smsp {

/// Bounds the reply bytes all connections together hold beyond their free
/// allowance (connection_config::max_unsent and connection_state in
/// net/connection_state.hpp). A connection asks for more with request(); a
/// request that does not fit waits, first come first served, until others
/// release() or are forget()-ten. `Holder` identifies a connection.
template <class Holder>
class output_budget {
public:
  /// A grant to deliver: `bytes` for `holder`.
  struct grant {
    Holder holder;
    size_t bytes;
  };

  /// `total` bytes to hand out.
  explicit output_budget(size_t total) : total_(total) {
    // nop
  }

  /// Asks for `bytes` more for `holder`. True: granted now. False: it waits
  /// and comes back from a later release() or forget(). A holder has at most
  /// one request waiting; a second one adds to it. A request larger than the
  /// whole budget is cut to it, so that it can be served once all is free.
  bool request(const Holder& holder, size_t bytes) {
    bytes = std::min(bytes, total_);
    if (waiting_.empty() && in_use_ + bytes <= total_) {
      in_use_ += bytes;
      held_[holder] += bytes;
      return true;
    }
    for (auto& w : waiting_)
      if (w.holder == holder) {
        w.bytes = std::min(w.bytes + bytes, total_);
        return false;
      }
    waiting_.push_back({holder, bytes});
    return false;
  }

  /// `holder` gives back `bytes` (at most what it holds). Returns the
  /// waiting requests that now fit, in arrival order, already counted as
  /// held.
  std::vector<grant> release(const Holder& holder, size_t bytes) {
    auto i = held_.find(holder);
    if (i != held_.end()) {
      auto n = std::min(bytes, i->second);
      i->second -= n;
      in_use_ -= n;
      if (i->second == 0)
        held_.erase(i);
    }
    return serve();
  }

  /// `holder` is gone: frees all it holds and drops its waiting request.
  /// Returns the waiting requests that now fit, as release() does.
  std::vector<grant> forget(const Holder& holder) {
    if (auto i = held_.find(holder); i != held_.end()) {
      in_use_ -= i->second;
      held_.erase(i);
    }
    for (auto i = waiting_.begin(); i != waiting_.end(); ++i)
      if (i->holder == holder) {
        waiting_.erase(i);
        break;
      }
    return serve();
  }

  /// Bytes held by `holder`.
  size_t held_by(const Holder& holder) const {
    auto i = held_.find(holder);
    return i == held_.end() ? 0 : i->second;
  }

  /// Every holder with a grant, e.g. to ask them for spare bytes back.
  std::vector<Holder> holders() const {
    std::vector<Holder> out;
    for (auto& entry : held_)
      out.push_back(entry.first);
    return out;
  }

  size_t total() const {
    return total_;
  }

  size_t in_use() const {
    return in_use_;
  }

  size_t waiting() const {
    return waiting_.size();
  }

private:
  std::vector<grant> serve() {
    std::vector<grant> out;
    while (!waiting_.empty() && in_use_ + waiting_.front().bytes <= total_) {
      auto next = waiting_.front();
      waiting_.pop_front();
      in_use_ += next.bytes;
      held_[next.holder] += next.bytes;
      out.push_back(next);
    }
    return out;
  }

  size_t total_;
  size_t in_use_ = 0;
  /// Invariant: the values add up to in_use_, and none is zero.
  std::map<Holder, size_t> held_;
  /// First come, first served: a large request at the front is not starved
  /// by small ones behind it.
  std::deque<grant> waiting_;
};

} // namespace smsp
