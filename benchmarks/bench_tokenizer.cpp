// Tokenizer throughput: encode of prose and of one long repeated character
// (a single pre-token for the GPT-2 regex) at 1 KiB, 64 KiB and 1 MiB, to
// show that encoding stays near-linear in the input length; and decode /
// streaming decode of the resulting ids.
#include <benchmark/benchmark.h>

#include <assistgen/tokenizer.hpp>
#include <string>

namespace {

const std::string kTokDir = std::string(ASSISTGEN_MODELS_DIR) + "/../tests/data/tokenizers/";

const assistgen::Tokenizer& tokenizer(int which) {
  static const assistgen::Tokenizer gpt2 = assistgen::Tokenizer::load(kTokDir + "gpt2-8k");
  static const assistgen::Tokenizer llama3 = assistgen::Tokenizer::load(kTokDir + "llama3-8k");
  static const assistgen::Tokenizer spm = assistgen::Tokenizer::load(kTokDir + "spm-bf");
  return which == 0 ? gpt2 : which == 1 ? llama3 : spm;
}

std::string prose(std::size_t bytes) {
  static const std::string para =
      "In the beginning God created the heaven and the earth. And the earth was without form, and "
      "void; "
      "and darkness was upon the face of the deep. Numbers 1, 22, 333 and 4444; caf\xC3\xA9, "
      "\xE4\xB8\xAD\xE6\x96\x87, "
      "emoji \xF0\x9F\x98\x80 and code: for (int i = 0; i < n; ++i) { sum += a[i]; }\n\n";
  std::string s;
  while (s.size() < bytes) s += para;
  s.resize(bytes);
  return s;
}

void label(benchmark::State& state) {
  static const char* kNames[] = {"gpt2", "llama3", "spm"};
  state.SetLabel(kNames[state.range(1)]);
}

void BM_EncodeProse(benchmark::State& state) {
  const auto& tok = tokenizer(static_cast<int>(state.range(1)));
  const std::string text = prose(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  label(state);
}

void BM_EncodeRepeatedChar(benchmark::State& state) {
  const auto& tok = tokenizer(static_cast<int>(state.range(1)));
  const std::string text(static_cast<std::size_t>(state.range(0)), 'a');
  for (auto _ : state) benchmark::DoNotOptimize(tok.encode(text));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
  label(state);
}

void BM_Decode(benchmark::State& state) {
  const auto& tok = tokenizer(static_cast<int>(state.range(1)));
  const auto ids = tok.encode(prose(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ids.size()));
  label(state);
}

void BM_StreamingDecode(benchmark::State& state) {
  const auto& tok = tokenizer(static_cast<int>(state.range(1)));
  const auto ids = tok.encode(prose(static_cast<std::size_t>(state.range(0))));
  for (auto _ : state) {
    auto st = tok.streaming();
    std::size_t n = 0;
    for (auto id : ids) n += st.push(id).size();
    n += st.finish().size();
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * ids.size()));
  label(state);
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int t = 0; t < 3; ++t)
    for (std::int64_t n : {1 << 10, 64 << 10, 1 << 20}) b->Args({n, t});
  b->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_EncodeProse)->Apply(sizes);
BENCHMARK(BM_EncodeRepeatedChar)->Apply(sizes);
BENCHMARK(BM_Decode)->Apply(sizes);
BENCHMARK(BM_StreamingDecode)->Apply(sizes);
BENCHMARK_MAIN();
