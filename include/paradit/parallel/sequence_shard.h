// How a range of n items (tokens of a sequence, heads of a layer) is cut over `parts` ranks: contiguous ranges,
// as even as possible, the first n % parts ranges one item longer. Every sharded tensor — tokens, RoPE tables,
// latents, Ulysses heads — is cut this way, so ranks agree on who holds what without talking, and no length
// is refused for not dividing the degree.
#pragma once

#include <cstdint>
#include <vector>

namespace paradit {

class SequenceShard {
 public:
  SequenceShard(int64_t length, int parts);

  int64_t length() const { return length_; }
  int parts() const { return parts_; }
  // First item of `part`; start(parts()) == length(), so [start(a), start(b)) spans parts a..b-1.
  int64_t start(int part) const;
  int64_t count(int part) const;
  int64_t end(int part) const { return start(part) + count(part); }
  int64_t max_count() const { return (length_ + parts_ - 1) / parts_; }
  std::vector<int64_t> counts() const;

 private:
  int64_t length_;
  int parts_;
};

}  // namespace paradit
