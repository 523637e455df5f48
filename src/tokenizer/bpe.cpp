// The BPE model: a word's characters become symbols, and the lowest-ranked
// adjacent pair is merged until none is left. A heap of candidate merges over
// a doubly linked list of symbols makes that O(n log n) for a word of n
// characters, so a megabyte-long pre-token (one run of a repeated letter) is
// still fast.
#include <queue>

#include "tokenizer_internal.hpp"

namespace assistgen::tok {

namespace {

struct Symbol {
  Token id;
  std::int32_t prev;
  std::int32_t next;
  bool alive;
};

struct Candidate {
  std::int32_t rank;
  std::int32_t pos;  // index of the left symbol
  Token new_id;
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

inline std::uint64_t pair_key(Token a, Token b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
         static_cast<std::uint32_t>(b);
}

}  // namespace

void Bpe::encode_word(std::string_view word, std::vector<Token>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = vocab.find(std::string(word)); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }

  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool last_was_unk = false;
  std::string key;
  auto push_symbol = [&](Token id) {
    symbols.push_back({id, static_cast<std::int32_t>(symbols.size()) - 1, -1, true});
  };
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t n = utf8_len(static_cast<unsigned char>(word[i]));
    const std::string_view ch = word.substr(i, n);
    const bool first = i == 0;
    i += n;
    const bool last = i >= word.size();
    key.clear();
    if (!first && !continuing_subword_prefix.empty()) key += continuing_subword_prefix;
    key += ch;
    if (last && !end_of_word_suffix.empty()) key += end_of_word_suffix;
    if (auto it = vocab.find(key); it != vocab.end()) {
      push_symbol(it->second);
      last_was_unk = false;
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (const char c : ch) all = all && byte_ids[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (const char c : ch) push_symbol(byte_ids[static_cast<unsigned char>(c)]);
        last_was_unk = false;
        continue;
      }
    }
    if (unk_id) {
      if (!(fuse_unk && last_was_unk)) push_symbol(*unk_id);
      last_was_unk = true;
    }
    // Without an unk token the character is dropped, as the Rust crate does.
  }
  const auto count = static_cast<std::int32_t>(symbols.size());
  for (std::int32_t k = 0; k < count; ++k) symbols[k].next = k + 1 < count ? k + 1 : -1;
  if (count > 0) symbols[0].prev = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto consider = [&](std::int32_t left) {
    const std::int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges.find(pair_key(symbols[left].id, symbols[right].id));
    if (it != merges.end()) heap.push({it->second.first, left, it->second.second});
  };
  for (std::int32_t k = 0; k + 1 < count; ++k) consider(k);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    // Stale entry: one side was merged into something else since it was pushed.
    auto it = merges.find(pair_key(left.id, right.id));
    if (it == merges.end() || it->second.second != c.new_id || it->second.first != c.rank) continue;
    left.id = c.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (std::int32_t k = count > 0 ? 0 : -1; k >= 0; k = symbols[k].next)
    out.push_back(symbols[k].id);
}

}  // namespace assistgen::tok
