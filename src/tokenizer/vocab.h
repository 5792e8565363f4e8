// A compact string -> id table (open addressing over one byte arena) for vocabularies of a few
// hundred thousand tokens: cheaper to build and probe than std::unordered_map<std::string, int>.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace peft::tok {

class FlatVocab {
 public:
  // Adds s -> id; a repeated s takes the new id.
  void insert(std::string_view s, int32_t id) {
    if (2 * (ids_.size() + 1) > slots_.size()) rehash(std::max<size_t>(64, 2 * slots_.size()));
    size_t i = hash(s) & mask_;
    for (; slots_[i] >= 0; i = (i + 1) & mask_) {
      if (key(slots_[i]) == s) {
        ids_[slots_[i]] = id;
        return;
      }
    }
    slots_[i] = static_cast<int32_t>(ids_.size());
    offsets_.push_back(arena_.size());
    arena_.append(s);
    lengths_.push_back(static_cast<uint32_t>(s.size()));
    ids_.push_back(id);
  }
  // The id of s, or -1.
  int32_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    for (size_t i = hash(s) & mask_; slots_[i] >= 0; i = (i + 1) & mask_)
      if (key(slots_[i]) == s) return ids_[slots_[i]];
    return -1;
  }
  size_t size() const { return ids_.size(); }
  // Calls f(token, id) for every entry, in insertion order.
  template <typename F>
  void for_each(F&& f) const {
    for (size_t e = 0; e < ids_.size(); ++e) f(key(static_cast<int32_t>(e)), ids_[e]);
  }

 private:
  static size_t hash(std::string_view s) { return std::hash<std::string_view>{}(s); }
  std::string_view key(int32_t e) const {
    return std::string_view(arena_).substr(offsets_[e], lengths_[e]);
  }
  void rehash(size_t cap) {
    slots_.assign(cap, -1);
    mask_ = cap - 1;
    for (size_t e = 0; e < ids_.size(); ++e) {
      size_t i = hash(key(static_cast<int32_t>(e))) & mask_;
      while (slots_[i] >= 0) i = (i + 1) & mask_;
      slots_[i] = static_cast<int32_t>(e);
    }
  }
  std::string arena_;
  std::vector<size_t> offsets_;
  std::vector<uint32_t> lengths_;
  std::vector<int32_t> ids_;
  std::vector<int32_t> slots_;
  size_t mask_ = 0;
};

}  // namespace peft::tok
