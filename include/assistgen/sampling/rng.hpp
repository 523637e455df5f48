// The random number generator of a generation. One Rng per sequence, seeded
// from GenerationConfig::seed. Uniform numbers are built from the engine's raw
// bits here (std::uniform_real_distribution's output is implementation
// defined), so a seed gives the same tokens with every standard library.
#pragma once

#include <cstdint>
#include <random>

namespace assistgen {

/// Seeded 64-bit Mersenne Twister with portable uniform draws.
class Rng {
 public:
  /// Seeded as by reseed(`seed`).
  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  /// Restarts the stream. The seed is mixed with SplitMix64 first so that
  /// nearby seeds (0, 1, 2, ...) give unrelated streams.
  void reseed(std::uint64_t seed) { engine_.seed(splitmix64(seed)); }

  /// Uniform double in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  /// Raw 64 random bits.
  std::uint64_t bits() { return engine_(); }

  /// One SplitMix64 step: a bijective mix of `x`'s bits (the seed scrambler).
  static constexpr std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace assistgen
