// The backend conformance test: checks at run time the parts of the CausalLM
// contract a compiler cannot (docs/custom_backend.md): logits shape and
// finiteness, that appending n tokens at once equals appending them one by
// one, that truncate(n) followed by forward equals a fresh cache fed the same
// tokens, and that errors (capacity, bad token, bad truncate) throw the
// documented exception and leave the cache unchanged.
//
// Header-only and free of any test framework, so every backend author can run
// it from whatever they test with:
//
//   auto report = assistgen::testing::check_backend(model);
//   if (!report.ok()) { std::cerr << report.summary(); return 1; }  // plain main
//   INFO(report.summary()); REQUIRE(report.ok());                     // Catch2
//   EXPECT_TRUE(report.ok()) << report.summary();                     // GoogleTest
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>
#include <vector>

#include "assistgen/backend.hpp"
#include "assistgen/error.hpp"
#include "assistgen/types.hpp"

namespace assistgen::testing {

/// Options of check_backend(). The defaults suit a model of any size that
/// computes in float32; loosen the tolerances for reduced-precision compute.
struct ConformanceOptions {
  /// Tokens fed by the checks; empty: `sequence_length` pseudo-random ids
  /// below vocab_size() drawn from `seed`.
  std::vector<Token> tokens = {};
  /// Length of the generated sequence when `tokens` is empty (at least 4).
  std::size_t sequence_length = 12;
  /// Seed of the generated sequence.
  std::uint64_t seed = 1;
  /// Logits a and b agree when |a - b| <= atol + rtol * |b|. A batched
  /// forward may sum in another order than a one-token forward, so exact
  /// equality is not required.
  float atol = 1e-4f;  ///< absolute tolerance
  float rtol = 1e-4f;  ///< relative tolerance
  /// Run the thread-safety check: `threads` threads share the const model,
  /// each with its own cache, and must get the single-threaded logits.
  /// 0 or 1 skips it.
  std::size_t threads = 2;
  /// Check that a token id outside [0, vocab_size()) throws InvalidArgument.
  /// Turn off only for a backend that cannot know its vocabulary's bounds.
  bool check_token_range = true;
};

/// The outcome of one check.
struct CheckResult {
  std::string name;     ///< e.g. "truncate_then_forward"
  bool passed = false;  ///< whether the check passed
  std::string message;  ///< what went wrong (empty when passed)
};

/// The outcome of check_backend(): one entry per check, in order.
struct ConformanceReport {
  std::vector<CheckResult> checks;  ///< every check run, in order

  /// True when every check passed.
  bool ok() const {
    return std::all_of(checks.begin(), checks.end(), [](const CheckResult& c) { return c.passed; });
  }
  /// The checks that failed.
  std::vector<CheckResult> failures() const {
    std::vector<CheckResult> f;
    for (const auto& c : checks)
      if (!c.passed) f.push_back(c);
    return f;
  }
  /// One line per check: "PASS name" or "FAIL name: message".
  std::string summary() const {
    std::string s;
    for (const auto& c : checks)
      s += (c.passed ? "PASS " : "FAIL ") + c.name + (c.passed ? "" : ": " + c.message) + "\n";
    return s;
  }
};

namespace detail {

// Thrown by the checks below to fail the current check with a message.
struct CheckFailed {
  std::string message;
};

inline void expect(bool condition, const std::string& message) {
  if (!condition) throw CheckFailed{message};
}

inline std::string shape(const Logits& l) {
  return "[" + std::to_string(l.rows()) + ", " + std::to_string(l.cols()) + "]";
}

// First element where `got` row r0 + i differs from `want` row w0 + i, as a
// message; empty when rows agree within tolerance.
inline std::string compare_rows(const Logits& got, std::size_t g0, const Logits& want, std::size_t w0,
                                std::size_t rows, const ConformanceOptions& o) {
  if (got.cols() != want.cols()) return "column counts differ: " + shape(got) + " vs " + shape(want);
  for (std::size_t i = 0; i < rows; ++i) {
    const auto a = got.row(g0 + i);
    const auto b = want.row(w0 + i);
    for (std::size_t j = 0; j < a.size(); ++j) {
      if (a[j] == b[j]) continue;  // also two equal infinities, whose difference is NaN
      const float d = std::fabs(a[j] - b[j]);
      if (!(d <= o.atol + o.rtol * std::fabs(b[j]))) {
        std::ostringstream m;
        m << "row " << i << ", column " << j << ": " << a[j] << " vs " << b[j] << " (difference " << d
          << ", tolerance " << o.atol + o.rtol * std::fabs(b[j]) << ")";
        return m.str();
      }
    }
  }
  return {};
}

// splitmix64: a tiny seeded generator, so the token sequence is the same on
// every platform (std::uniform_int_distribution is not).
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <class Fn>
void run_check(ConformanceReport& report, std::string name, Fn&& fn) {
  CheckResult r;
  r.name = std::move(name);
  try {
    fn();
    r.passed = true;
  } catch (const CheckFailed& e) {
    r.message = e.message;
  } catch (const std::exception& e) {
    r.message = std::string("unexpected exception (") + typeid(e).name() + "): " + e.what();
  } catch (...) {
    r.message = "unexpected exception of a non-std type";
  }
  report.checks.push_back(std::move(r));
}

// Expects `fn` to throw an E (and nothing else).
template <class E, class Fn>
void expect_throw(Fn&& fn, const std::string& what) {
  try {
    fn();
  } catch (const E&) {
    return;
  } catch (const std::exception& e) {
    throw CheckFailed{what + " threw " + typeid(e).name() + " (\"" + e.what() + "\"), expected " +
                      typeid(E).name()};
  }
  throw CheckFailed{what + " did not throw; expected " + std::string(typeid(E).name())};
}

}  // namespace detail

/// Runs every conformance check on `model` and returns a report; it never
/// throws for a failing check (exceptions a check did not expect become
/// failures naming them). Needs only what CausalLM requires; caches are made
/// with `model.make_cache`, so the model is the factory of everything used.
///
/// The checks (names as in the report):
/// - `vocab_size`: positive;
/// - `make_cache`: an empty cache (size 0) with capacity at least the one asked for;
/// - `logits_shape`: forward of n tokens returns [n, vocab_size()] logits
///   (no NaN or +inf, at least one finite value per row) and grows the cache
///   by n, for n = whole sequence and n = 1;
/// - `deterministic`: two fresh caches fed the same tokens give the same logits;
/// - `append_many_equals_one_by_one`: one forward of n tokens == n forwards of
///   one token, and == a forward of a prefix followed by the rest;
/// - `truncate_then_forward`: after forward(A + B) and truncate(|A|),
///   forward(C) gives the logits of a fresh cache fed A + C; truncate(size())
///   changes nothing and truncate(0) restarts the sequence;
/// - `truncate_beyond_size`: truncate(size() + 1) throws InvalidArgument and
///   leaves the cache unchanged;
/// - `capacity_error`: appending past capacity() throws CapacityError, leaves
///   the cache unchanged and still usable; filling it exactly works;
/// - `token_out_of_range`: ids -1 and vocab_size() throw InvalidArgument,
///   cache unchanged (unless options.check_token_range is false);
/// - `empty_input`: forward of no tokens returns 0 rows or throws
///   InvalidArgument, and leaves the cache unchanged;
/// - `moved_cache`: a moved-to cache continues the sequence of the moved-from one;
/// - `independent_caches`: interleaving two caches does not change either's logits;
/// - `concurrent_forward`: options.threads threads, one cache each, sharing the model.
///
/// And for each optional capability the backend declares (backend.hpp):
/// - `batched_forward` (ForwardsBatches): two requests over two caches in one
///   call, the second with `outputs` = 1, give the rows of each sequence run
///   alone and grow each cache by its tokens; a call with one cache twice is
///   an InvalidArgument that leaves the caches unchanged;
/// - `tree_requests` (AttendsTrees): every node of a tree with siblings and
///   a deep branch gets the logits of its root-to-node chain (the flattened
///   reference);
/// - `tree_continuation` (ContinuesTrees, when continues_trees() is true):
///   the same tree fed in two calls, the second continuing the nodes the
///   first left in the cache (ForwardRequest::tree_base), gives each node
///   its chain's logits too;
/// - `keep_branch` (CacheHasKeep): keep() of a tree branch, then a forward,
///   gives the logits of the branch as a chain; keep(n, {}) is truncate(n);
/// - `layer_plans` (RunsLayerPlans): a plan of all layers gives the plain
///   logits, and an early exit after the first layer gives one finite row per
///   token.
template <CausalLM M>
ConformanceReport check_backend(const M& model, const ConformanceOptions& options = {}) {
  using Cache = typename M::Cache;
  using detail::expect;
  ConformanceReport report;
  const ConformanceOptions& o = options;

  std::size_t vocab = 0;
  detail::run_check(report, "vocab_size", [&] {
    vocab = static_cast<std::size_t>(model.vocab_size());
    expect(vocab > 0, "vocab_size() is 0");
  });
  if (vocab == 0) return report;

  std::vector<Token> seq = o.tokens;
  if (seq.empty()) {
    std::uint64_t state = o.seed;
    for (std::size_t i = 0; i < std::max<std::size_t>(o.sequence_length, 4); ++i)
      seq.push_back(static_cast<Token>(detail::splitmix64(state) % vocab));
  }
  const std::size_t n = seq.size();
  const std::span<const Token> all(seq);
  const std::size_t half = n / 2;

  detail::run_check(report, "token_sequence", [&] {
    expect(n >= 4, "options.tokens must hold at least 4 tokens, it has " + std::to_string(n));
    for (std::size_t i = 0; i < n; ++i)
      expect(seq[i] >= 0 && static_cast<std::size_t>(seq[i]) < vocab,
             "options.tokens[" + std::to_string(i) + "] = " + std::to_string(seq[i]) +
                 " is outside the vocabulary of " + std::to_string(vocab));
  });
  if (!report.ok()) return report;

  // The reference: the whole sequence in one call on a fresh cache. Most
  // checks compare against it; if it cannot be computed nothing else can.
  Logits reference;
  detail::run_check(report, "make_cache", [&] {
    Cache c = model.make_cache(n);
    expect(c.size() == 0, "a new cache has size() " + std::to_string(c.size()) + ", expected 0");
    expect(c.capacity() >= n, "make_cache(" + std::to_string(n) + ") has capacity() " +
                                  std::to_string(c.capacity()));
  });
  detail::run_check(report, "logits_shape", [&] {
    Cache c = model.make_cache(n + 1);
    reference = model.forward(all, c);
    expect(reference.rows() == n && reference.cols() == vocab,
           "forward of " + std::to_string(n) + " tokens returned " + detail::shape(reference) +
               ", expected [" + std::to_string(n) + ", " + std::to_string(vocab) + "]");
    expect(c.size() == n, "after forward of " + std::to_string(n) + " tokens the cache has size() " +
                              std::to_string(c.size()));
    // -inf is allowed (a token the model rules out); NaN and +inf are not,
    // and every row needs a finite logit for softmax to be defined.
    for (std::size_t i = 0; i < n; ++i) {
      bool any_finite = false;
      for (float v : reference.row(i)) {
        expect(!std::isnan(v) && v != INFINITY, "row " + std::to_string(i) + " holds a NaN or +inf logit");
        any_finite = any_finite || std::isfinite(v);
      }
      expect(any_finite, "row " + std::to_string(i) + " has no finite logit");
    }
    const Token one[] = {seq[0]};
    const Logits l1 = model.forward(one, c);
    expect(l1.rows() == 1 && l1.cols() == vocab,
           "forward of 1 token returned " + detail::shape(l1) + ", expected [1, " + std::to_string(vocab) + "]");
    expect(c.size() == n + 1, "after a further 1-token forward the cache has size() " + std::to_string(c.size()));
  });
  if (reference.rows() != n || reference.cols() != vocab) return report;

  detail::run_check(report, "deterministic", [&] {
    Cache c = model.make_cache(n);
    const Logits again = model.forward(all, c);
    const std::string d = detail::compare_rows(again, 0, reference, 0, n, o);
    expect(d.empty(), "a second fresh cache fed the same tokens differs at " + d);
  });

  detail::run_check(report, "append_many_equals_one_by_one", [&] {
    Cache c = model.make_cache(n);
    for (std::size_t i = 0; i < n; ++i) {
      const Logits l = model.forward(all.subspan(i, 1), c);
      expect(l.rows() == 1, "forward of 1 token returned " + detail::shape(l));
      const std::string d = detail::compare_rows(l, 0, reference, i, 1, o);
      expect(d.empty(), "token " + std::to_string(i) + " fed alone differs from the batched forward: " + d);
    }
    Cache c2 = model.make_cache(n);
    model.forward(all.first(half), c2);
    const Logits rest = model.forward(all.subspan(half), c2);
    const std::string d = detail::compare_rows(rest, 0, reference, half, n - half, o);
    expect(d.empty(), "prefix of " + std::to_string(half) + " then the rest differs from one forward: " + d);
  });

  detail::run_check(report, "truncate_then_forward", [&] {
    // A + B fed, rolled back to A, then C = the second half reversed.
    std::vector<Token> c_part(seq.begin() + static_cast<std::ptrdiff_t>(half), seq.end());
    std::reverse(c_part.begin(), c_part.end());
    std::vector<Token> a_c(seq.begin(), seq.begin() + static_cast<std::ptrdiff_t>(half));
    a_c.insert(a_c.end(), c_part.begin(), c_part.end());
    Cache fresh = model.make_cache(n);
    const Logits want = model.forward(a_c, fresh);

    Cache c = model.make_cache(n);
    model.forward(all, c);
    c.truncate(c.size());
    expect(c.size() == n, "truncate(size()) changed size() to " + std::to_string(c.size()));
    c.truncate(half);
    expect(c.size() == half, "truncate(" + std::to_string(half) + ") left size() " + std::to_string(c.size()));
    const Logits got = model.forward(c_part, c);
    std::string d = detail::compare_rows(got, 0, want, half, n - half, o);
    expect(d.empty(), "forward after truncate(" + std::to_string(half) +
                          ") differs from a fresh cache fed the same tokens: " + d);
    // Rolling back by one and re-feeding the same token gives the same row.
    c.truncate(c.size() - 1);
    const Logits last = model.forward(std::span<const Token>(c_part).last(1), c);
    d = detail::compare_rows(last, 0, want, n - 1, 1, o);
    expect(d.empty(), "truncate(size() - 1) then re-feeding the last token differs: " + d);
    c.truncate(0);
    expect(c.size() == 0, "truncate(0) left size() " + std::to_string(c.size()));
    const Logits restart = model.forward(all, c);
    d = detail::compare_rows(restart, 0, reference, 0, n, o);
    expect(d.empty(), "truncate(0) then the whole sequence differs from a fresh cache: " + d);
  });

  detail::run_check(report, "truncate_beyond_size", [&] {
    Cache c = model.make_cache(n);
    model.forward(all.first(half), c);
    detail::expect_throw<InvalidArgument>([&] { c.truncate(half + 1); },
                                          "truncate(size() + 1)");
    expect(c.size() == half, "a failed truncate changed size() from " + std::to_string(half) + " to " +
                                 std::to_string(c.size()));
    const Logits l = model.forward(all.subspan(half), c);
    const std::string d = detail::compare_rows(l, 0, reference, half, n - half, o);
    expect(d.empty(), "after a failed truncate the cache no longer continues the sequence: " + d);
  });

  detail::run_check(report, "capacity_error", [&] {
    Cache c = model.make_cache(half);
    const std::size_t cap = c.capacity();
    expect(cap >= half, "make_cache(" + std::to_string(half) + ") has capacity() " + std::to_string(cap));
    if (cap >= n) return;  // a backend that rounds capacity up past n: nothing to overflow here
    model.forward(all.first(half), c);
    detail::expect_throw<CapacityError>([&] { model.forward(all.subspan(half), c); },
                                        "forward past capacity() " + std::to_string(cap));
    expect(c.size() == half, "a forward that overflowed the capacity changed size() from " +
                                 std::to_string(half) + " to " + std::to_string(c.size()));
    if (cap > half) {
      const Logits l = model.forward(all.subspan(half, cap - half), c);
      const std::string d = detail::compare_rows(l, 0, reference, half, cap - half, o);
      expect(d.empty(), "after a capacity error, filling the cache up to capacity() differs: " + d);
    }
    expect(c.size() == cap, "a cache filled to capacity() has size() " + std::to_string(c.size()));
    detail::expect_throw<CapacityError>([&] { model.forward(all.first(1), c); },
                                        "forward of 1 token into a full cache");
  });

  if (o.check_token_range) {
    detail::run_check(report, "token_out_of_range", [&] {
      Cache c = model.make_cache(n);
      model.forward(all.first(1), c);
      for (const Token bad : {Token{-1}, static_cast<Token>(vocab)}) {
        const Token input[] = {seq[1], bad};
        detail::expect_throw<InvalidArgument>([&] { model.forward(input, c); },
                                              "forward of token id " + std::to_string(bad));
        expect(c.size() == 1, "a forward with token id " + std::to_string(bad) + " changed size() to " +
                                  std::to_string(c.size()));
      }
      const Logits l = model.forward(all.subspan(1), c);
      const std::string d = detail::compare_rows(l, 0, reference, 1, n - 1, o);
      expect(d.empty(), "after rejected token ids the cache no longer continues the sequence: " + d);
    });
  }

  detail::run_check(report, "empty_input", [&] {
    Cache c = model.make_cache(n);
    model.forward(all.first(half), c);
    std::optional<Logits> l;
    try {
      l = model.forward(std::span<const Token>(), c);
    } catch (const InvalidArgument&) {
    }
    if (l) expect(l->rows() == 0, "forward of no tokens returned " + detail::shape(*l) + ", expected 0 rows");
    expect(c.size() == half, "forward of no tokens changed size() from " + std::to_string(half) + " to " +
                                 std::to_string(c.size()));
  });

  detail::run_check(report, "moved_cache", [&] {
    Cache a = model.make_cache(n);
    model.forward(all.first(half), a);
    Cache b = std::move(a);
    expect(b.size() == half, "a move-constructed cache has size() " + std::to_string(b.size()));
    std::optional<Cache> slot;
    slot.emplace(model.make_cache(n));
    *slot = std::move(b);
    const Logits l = model.forward(all.subspan(half), *slot);
    const std::string d = detail::compare_rows(l, 0, reference, half, n - half, o);
    expect(d.empty(), "a moved cache does not continue the sequence: " + d);
  });

  detail::run_check(report, "independent_caches", [&] {
    std::vector<Token> other(seq.rbegin(), seq.rend());
    Cache want_cache = model.make_cache(n);
    const Logits want_other = model.forward(other, want_cache);
    Cache c1 = model.make_cache(n);
    Cache c2 = model.make_cache(n);
    for (std::size_t i = 0; i < n; ++i) {
      const Logits l1 = model.forward(all.subspan(i, 1), c1);
      const Logits l2 = model.forward(std::span<const Token>(other).subspan(i, 1), c2);
      std::string d = detail::compare_rows(l1, 0, reference, i, 1, o);
      expect(d.empty(), "cache 1 at position " + std::to_string(i) + " is disturbed by cache 2: " + d);
      d = detail::compare_rows(l2, 0, want_other, i, 1, o);
      expect(d.empty(), "cache 2 at position " + std::to_string(i) + " is disturbed by cache 1: " + d);
    }
  });

  if (o.threads > 1) {
    detail::run_check(report, "concurrent_forward", [&] {
      std::vector<std::string> errors(o.threads);
      std::vector<std::thread> pool;
      for (std::size_t t = 0; t < o.threads; ++t)
        pool.emplace_back([&, t] {
          try {
            for (int rep = 0; rep < 3; ++rep) {
              Cache c = model.make_cache(n);
              model.forward(all.first(half), c);
              const Logits l = model.forward(all.subspan(half), c);
              const std::string d = detail::compare_rows(l, 0, reference, half, n - half, o);
              if (!d.empty()) {
                errors[t] = "thread " + std::to_string(t) + " got other logits: " + d;
                return;
              }
            }
          } catch (const std::exception& e) {
            errors[t] = "thread " + std::to_string(t) + " threw: " + e.what();
          }
        });
      for (auto& th : pool) th.join();
      for (const auto& e : errors) expect(e.empty(), e);
    });
  }
  if constexpr (ForwardsBatches<M>) {
    detail::run_check(report, "batched_forward", [&] {
      std::vector<Token> other(seq.rbegin(), seq.rend());
      Cache want_cache = model.make_cache(n);
      const Logits want_other = model.forward(other, want_cache);
      Cache c1 = model.make_cache(n), c2 = model.make_cache(n);
      model.forward(all.first(half), c1);
      const ForwardRequest reqs[] = {{all.subspan(half)}, {other, {}, 1}};
      Cache* caches[] = {&c1, &c2};
      Logits out;
      model.forward(std::span<const ForwardRequest>(reqs), std::span<Cache* const>(caches), out, LayerPlan{});
      expect(out.rows() == n - half + 1 && out.cols() == vocab,
             "two requests of " + std::to_string(n - half) + " rows and 1 output row returned " + detail::shape(out));
      std::string d = detail::compare_rows(out, 0, reference, half, n - half, o);
      expect(d.empty(), "request 0 of a batch differs from its sequence run alone: " + d);
      d = detail::compare_rows(out, n - half, want_other, n - 1, 1, o);
      expect(d.empty(), "request 1 (outputs = 1) of a batch differs from its sequence's last row: " + d);
      expect(c1.size() == n && c2.size() == n, "a batched forward left cache sizes " + std::to_string(c1.size()) +
                                                   " and " + std::to_string(c2.size()) + ", expected " +
                                                   std::to_string(n));
      Cache c3 = model.make_cache(n);
      Cache* twice[] = {&c3, &c3};
      const ForwardRequest two[] = {{all.first(1)}, {all.first(1)}};
      detail::expect_throw<InvalidArgument>(
          [&] { model.forward(std::span<const ForwardRequest>(two), std::span<Cache* const>(twice), out, LayerPlan{}); },
          "a batch with one cache twice");
      expect(c3.size() == 0, "a rejected batch changed a cache's size() to " + std::to_string(c3.size()));
    });
  }

  // A tree over the first half: node i follows node i - 2 (two interleaved
  // branches from the cached prefix), so every node has a sibling or cousin
  // and the deepest branch holds about half the nodes.
  const std::size_t tree_n = n - half;
  std::vector<std::int32_t> parent(tree_n);
  for (std::size_t i = 0; i < tree_n; ++i) parent[i] = i < 2 ? -1 : static_cast<std::int32_t>(i) - 2;
  auto branch_of = [&](std::size_t i) {
    std::vector<std::size_t> p;
    for (std::int64_t a = static_cast<std::int64_t>(i); a >= 0; a = parent[static_cast<std::size_t>(a)])
      p.insert(p.begin(), static_cast<std::size_t>(a));
    return p;
  };
  auto chain_of = [&](std::size_t i) {
    std::vector<Token> chain(seq.begin(), seq.begin() + static_cast<std::ptrdiff_t>(half));
    for (std::size_t a : branch_of(i)) chain.push_back(seq[half + a]);
    return chain;
  };
  if constexpr (AttendsTrees<M>) {
    detail::run_check(report, "tree_requests", [&] {
      Cache c = model.make_cache(n);
      model.forward(all.first(half), c);
      const ForwardRequest req{all.subspan(half), parent};
      Cache* cp = &c;
      Logits out;
      model.forward(std::span<const ForwardRequest>(&req, 1), std::span<Cache* const>(&cp, 1), out, LayerPlan{});
      expect(out.rows() == tree_n, "a tree of " + std::to_string(tree_n) + " nodes returned " + detail::shape(out));
      for (std::size_t i = 0; i < tree_n; ++i) {
        const std::vector<Token> chain = chain_of(i);
        Cache fresh = model.make_cache(n);
        const Logits want = model.forward(chain, fresh);
        const std::string d = detail::compare_rows(out, i, want, chain.size() - 1, 1, o);
        expect(d.empty(), "tree node " + std::to_string(i) + " differs from its branch run as a chain: " + d);
      }
    });
    if constexpr (ContinuesTrees<M>) {
      if (continues_trees(model))
        detail::run_check(report, "tree_continuation", [&] {
          // Nodes [0, split) in one call, the rest in a second call whose
          // parents in the first part point into the cache.
          const std::size_t split = tree_n / 2;
          Cache c = model.make_cache(n);
          model.forward(all.first(half), c);
          Cache* cp = &c;
          Logits first, second;
          const ForwardRequest a{all.subspan(half, split),
                                 std::span<const std::int32_t>(parent).first(split)};
          model.forward(std::span<const ForwardRequest>(&a, 1), std::span<Cache* const>(&cp, 1),
                        first, LayerPlan{});
          std::vector<std::int32_t> rest(parent.begin() + static_cast<std::ptrdiff_t>(split),
                                         parent.end());
          for (std::int32_t& p : rest)
            p = p < 0                                  ? -1
                : p < static_cast<std::int32_t>(split) ? -2 - p
                                                       : p - static_cast<std::int32_t>(split);
          const ForwardRequest b{all.subspan(half + split), rest, kAllRows, half,
                                 std::span<const std::int32_t>(parent).first(split)};
          model.forward(std::span<const ForwardRequest>(&b, 1), std::span<Cache* const>(&cp, 1),
                        second, LayerPlan{});
          expect(second.rows() == tree_n - split, "a continued tree of " +
                                                      std::to_string(tree_n - split) +
                                                      " nodes returned " + detail::shape(second));
          for (std::size_t i = 0; i < tree_n; ++i) {
            const std::vector<Token> chain = chain_of(i);
            Cache fresh = model.make_cache(n);
            const Logits want = model.forward(chain, fresh);
            const std::string d =
                detail::compare_rows(i < split ? first : second, i < split ? i : i - split, want,
                                     chain.size() - 1, 1, o);
            expect(d.empty(), "continued tree node " + std::to_string(i) +
                                  " differs from its branch run as a chain: " + d);
          }
        });
    }
    if constexpr (CacheHasKeep<Cache>) {
      detail::run_check(report, "keep_branch", [&] {
        Cache c = model.make_cache(n + 1);
        model.forward(all.first(half), c);
        const ForwardRequest req{all.subspan(half), parent};
        Cache* cp = &c;
        Logits out;
        model.forward(std::span<const ForwardRequest>(&req, 1), std::span<Cache* const>(&cp, 1), out, LayerPlan{});
        const std::size_t leaf = tree_n - 1;
        std::vector<std::uint32_t> rows;
        for (std::size_t a : branch_of(leaf)) rows.push_back(static_cast<std::uint32_t>(half + a));
        c.keep(half, rows);
        std::vector<Token> chain = chain_of(leaf);
        expect(c.size() == chain.size(), "keep of a branch of " + std::to_string(rows.size()) + " rows left size() " +
                                             std::to_string(c.size()));
        const Token next[] = {seq[0]};
        const Logits got = model.forward(next, c);
        chain.push_back(seq[0]);
        Cache fresh = model.make_cache(n + 1);
        const Logits want = model.forward(chain, fresh);
        const std::string d = detail::compare_rows(got, 0, want, chain.size() - 1, 1, o);
        expect(d.empty(), "a forward after keep() of a branch differs from the branch run as a chain: " + d);
        c.keep(1, std::span<const std::uint32_t>());
        expect(c.size() == 1, "keep(1, {}) left size() " + std::to_string(c.size()));
      });
    }
  }
  if constexpr (RunsLayerPlans<M>) {
    detail::run_check(report, "layer_plans", [&] {
      auto run = [&](const LayerPlan& plan) {
        Cache c = model.make_cache(n);
        const ForwardRequest req{all};
        Cache* cp = &c;
        Logits out;
        model.forward(std::span<const ForwardRequest>(&req, 1), std::span<Cache* const>(&cp, 1), out, plan);
        return out;
      };
      const Logits full = run(LayerPlan{});
      const std::string d = detail::compare_rows(full, 0, reference, 0, n, o);
      expect(d.empty(), "a plan of all layers differs from the plain forward: " + d);
      const Logits exit1 = run(LayerPlan{.early_exit = 1});
      expect(exit1.rows() == n && exit1.cols() == vocab, "an early-exit forward returned " + detail::shape(exit1));
      for (std::size_t i = 0; i < exit1.rows(); ++i)
        for (float v : exit1.row(i)) expect(!std::isnan(v), "an early-exit forward gave a NaN in row " + std::to_string(i));
    });
  }
  return report;
}

}  // namespace assistgen::testing
