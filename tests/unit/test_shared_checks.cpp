// The helpers every backend shares (the CPU backend and hpu_backend):
// KvLength (KV length bookkeeping and its error texts), check_token_ids (the
// token-id check and its text), rope_cos_sin (the RoPE tables), each held
// against literal texts and an independent long-double computation.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "assistgen/cpu/transformer.hpp"
#include "assistgen/detail/token_checks.hpp"
#include "assistgen/kv_length.hpp"
#include "assistgen/model_config.hpp"

using namespace assistgen;

namespace {

// The message of the exception `f` throws as E; fails the test otherwise.
template <typename E, typename F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no exception of the expected type");
  return {};
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.model_type = "llama";
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  return c;
}

}  // namespace

TEST_CASE("KvLength keeps size and capacity and words its errors once", "[kv][shared]") {
  KvLength len(8, "test cache");
  REQUIRE(len.size() == 0);
  REQUIRE(len.capacity() == 8);
  len.commit(5);
  REQUIRE(len.size() == 5);

  CHECK(message_of<InvalidArgument>([&] { len.truncate(6); }) ==
        "test cache: truncate(6) beyond size 5");
  REQUIRE(len.size() == 5);
  CHECK(message_of<CapacityError>([&] { len.check_append(4); }) ==
        "test cache full: appending 4 positions to 5 exceeds capacity 8");
  CHECK(message_of<CapacityError>([&] { len.commit(4); }) ==
        "test cache full: appending 4 positions to 5 exceeds capacity 8");
  // A count near SIZE_MAX must not wrap around the capacity check.
  CHECK_THROWS_AS(len.check_append(std::numeric_limits<std::size_t>::max()), CapacityError);
  REQUIRE(len.size() == 5);
  len.check_append(3);  // exactly fills it
  len.commit(3);
  REQUIRE(len.size() == 8);
  len.truncate(8);  // a no-op rollback is allowed
  len.truncate(2);
  REQUIRE(len.size() == 2);
  len.truncate(0);
  REQUIRE(len.size() == 0);
}

TEST_CASE("KvLength checks keep(base, rows) and names the entry at fault", "[kv][shared]") {
  KvLength len(16, "test cache");
  len.commit(10);
  const std::vector<std::uint32_t> ok = {4, 7, 9};
  len.check_keep(3, ok);
  CHECK(message_of<InvalidArgument>([&] { len.check_keep(11, {}); }) ==
        "test cache: keep: base 11 beyond size 10");
  const std::vector<std::uint32_t> unsorted = {4, 4};
  CHECK(message_of<InvalidArgument>([&] { len.check_keep(3, unsorted); }) ==
        "test cache: keep: row 4 (entry 1) is not after the previous one within [base 3, size 10)");
  const std::vector<std::uint32_t> below = {2};
  CHECK(message_of<InvalidArgument>([&] { len.check_keep(3, below); }) ==
        "test cache: keep: row 2 (entry 0) is not after the previous one within [base 3, size 10)");
  const std::vector<std::uint32_t> past = {5, 10};
  CHECK(
      message_of<InvalidArgument>([&] { len.check_keep(3, past); }) ==
      "test cache: keep: row 10 (entry 1) is not after the previous one within [base 3, size 10)");
  REQUIRE(len.size() == 10);
  len.kept(3, ok.size());
  REQUIRE(len.size() == 6);
}

TEST_CASE("KvLength moves leave the source empty and copies are deep", "[kv][shared]") {
  KvLength a(8, "test cache");
  a.commit(3);
  KvLength b = a;  // copy
  b.commit(2);
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 5);
  KvLength c = std::move(a);
  REQUIRE(c.size() == 3);
  REQUIRE(c.capacity() == 8);
  REQUIRE(a.size() == 0);      // NOLINT(bugprone-use-after-move): the documented state
  REQUIRE(a.capacity() == 0);  // NOLINT(bugprone-use-after-move)
  CHECK_THROWS_AS(a.commit(1), CapacityError);
  // The name travels with the length.
  CHECK(message_of<InvalidArgument>([&] { c.truncate(4); }) ==
        "test cache: truncate(4) beyond size 3");
  KvLength d;
  d = std::move(c);
  REQUIRE(d.size() == 3);
  REQUIRE(c.capacity() == 0);  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("check_token_ids names the first bad id, its position and request", "[shared][tokens]") {
  const std::vector<Token> good = {0, 5, 31};
  detail::check_token_ids(good, 32);
  const std::vector<Token> high = {0, 32, 40};
  CHECK(message_of<InvalidArgument>([&] { detail::check_token_ids(high, 32); }) ==
        "token id 32 at position 1 is out of range for vocabulary size 32");
  const std::vector<Token> negative = {3, 4, -1};
  CHECK(message_of<InvalidArgument>([&] { detail::check_token_ids(negative, 32); }) ==
        "token id -1 at position 2 is out of range for vocabulary size 32");
  CHECK(message_of<InvalidArgument>([&] { detail::check_token_ids(high, 32, 3); }) ==
        "token id 32 at position 1 of request 3 is out of range for vocabulary size 32");
  detail::check_token_ids({}, 0);  // nothing to check
  const std::vector<Token> zero = {0};
  CHECK_THROWS_AS(detail::check_token_ids(zero, 0), InvalidArgument);
}

TEST_CASE("cpu::Transformer rejects a bad token id with the shared text, cache unchanged",
          "[shared][tokens]") {
  const auto model = cpu::Transformer::random(tiny_config(), 7);
  auto cache = model.make_cache(16);
  const std::vector<Token> prompt = {1, 2, 3};
  (void)model.forward(prompt, cache);
  const std::vector<Token> bad = {4, 32};
  CHECK(message_of<InvalidArgument>([&] { (void)model.forward(bad, cache); }) ==
        "token id 32 at position 1 is out of range for vocabulary size 32");
  const std::vector<Token> negative = {-7};
  CHECK(message_of<InvalidArgument>([&] { (void)model.forward(negative, cache); }) ==
        "token id -7 at position 0 is out of range for vocabulary size 32");
  REQUIRE(cache.size() == 3);
}

TEST_CASE("rope_cos_sin matches a long-double computation of HF's RoPE tables", "[shared][rope]") {
  ModelConfig c = tiny_config();
  c.head_dim = 64;
  c.rope_theta = 500000.0;
  const std::vector<double> inv = rope_inverse_frequencies(c);
  REQUIRE(inv.size() == 32);
  std::vector<float> cs(inv.size()), sn(inv.size());
  for (const std::size_t pos :
       {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{1000}, std::size_t{4095}}) {
    rope_cos_sin(inv, pos, cs.data(), sn.data());
    for (std::size_t j = 0; j < inv.size(); ++j) {
      // HF: inv_freq[j] = 1 / theta^(2j / d); angle = pos * inv_freq[j].
      const long double f = 1.0L / std::pow(500000.0L, static_cast<long double>(2 * j) / 64.0L);
      const long double a = static_cast<long double>(pos) * f;
      const float want_c = static_cast<float>(std::cos(a)),
                  want_s = static_cast<float>(std::sin(a));
      INFO("pos " << pos << " j " << j);
      // Double then float may differ from long double then float by one
      // rounding step of float (a double-rounding tie), nothing more.
      CHECK(std::abs(cs[j] - want_c) <= std::numeric_limits<float>::epsilon());
      CHECK(std::abs(sn[j] - want_s) <= std::numeric_limits<float>::epsilon());
    }
  }
  rope_cos_sin(inv, 0, cs.data(), sn.data());
  for (std::size_t j = 0; j < inv.size(); ++j) {
    CHECK(cs[j] == 1.0f);
    CHECK(sn[j] == 0.0f);
  }
}
