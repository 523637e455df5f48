// A minimal backend that models CausalLM; each compile-fail case copies it
// and breaks one member, so a failure can only come from that member.
#pragma once

#include <assistgen/backend.hpp>

#include <cstddef>
#include <span>

struct GoodCache {
  std::size_t size() const { return n; }
  std::size_t capacity() const { return cap; }
  void truncate(std::size_t m) { n = m; }
  std::size_t n = 0, cap = 0;
};

struct GoodModel {
  using Cache = GoodCache;
  std::size_t vocab_size() const { return 4; }
  Cache make_cache(std::size_t capacity) const { return Cache{0, capacity}; }
  assistgen::Logits forward(std::span<const assistgen::Token> tokens, Cache& cache) const {
    cache.n += tokens.size();
    return assistgen::Logits(tokens.size(), 4);
  }
};
