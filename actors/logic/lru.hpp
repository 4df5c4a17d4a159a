// A map that remembers the order its keys were last used in.
#pragma once

#include <list>
#include <unordered_map>
#include <utility>

namespace smsp {

/// Lookups through touch() move a key to the front; the back is the key
/// used longest ago. Bounding the size or the age is the caller's policy.
template <class Key, class Value>
class lru_map {
public:
  /// The value of `key`, now the most recently used, or nullptr.
  Value* touch(const Key& key) {
    auto i = index_.find(key);
    if (i == index_.end())
      return nullptr;
    order_.splice(order_.begin(), order_, i->second);
    return &i->second->second;
  }

  /// The value of `key` without changing the order, or nullptr.
  Value* peek(const Key& key) {
    auto i = index_.find(key);
    return i == index_.end() ? nullptr : &i->second->second;
  }

  /// Inserts or replaces `key` as the most recently used.
  Value& put(const Key& key, Value value) {
    if (auto existing = touch(key)) {
      *existing = std::move(value);
      return *existing;
    }
    order_.emplace_front(key, std::move(value));
    index_.emplace(key, order_.begin());
    return order_.front().second;
  }

  bool erase(const Key& key) {
    auto i = index_.find(key);
    if (i == index_.end())
      return false;
    order_.erase(i->second);
    index_.erase(i);
    return true;
  }

  /// The least recently used entry; the map must not be empty.
  std::pair<Key, Value>& oldest() {
    return order_.back();
  }

  void pop_oldest() {
    index_.erase(order_.back().first);
    order_.pop_back();
  }

  size_t size() const {
    return index_.size();
  }

  bool empty() const {
    return index_.empty();
  }

  /// Every entry, most recently used first.
  const std::list<std::pair<Key, Value>>& entries() const {
    return order_;
  }

private:
  std::list<std::pair<Key, Value>> order_;
  std::unordered_map<Key, typename std::list<std::pair<Key, Value>>::iterator>
    index_;
};

} // namespace smsp
