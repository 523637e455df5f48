// assistgen logits: logits of every position, optionally saved as .npy.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>

#include "assistgen/any_model.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/tokenizer.hpp"
#include "commands.hpp"
#include "hpu_ref.hpp"
#include "npy.hpp"

namespace assistgen::cli {

namespace {

struct Args {
  std::string model, tokens, prompt, out, dtype, backend = "cpu";
  int threads = 0;
  bool parse_special = false;
  CLI::Option *o_model, *o_tokens, *o_prompt, *o_out, *o_dtype, *o_parse_special, *o_threads;
};

int run(const Args& a) {
  require_option(a.o_model);
  if (given(a.o_tokens) == given(a.o_prompt))
    throw UsageError("give the input as --tokens IDS or as --prompt TEXT (-p), one of them");
  require_with(a.o_parse_special, given(a.o_prompt), "needs --prompt (-p)");
  std::vector<Token> tokens;
  if (given(a.o_tokens)) {
    tokens = parse_token_list(a.tokens);
  } else {
    // Encoded as generate -p encodes a prompt.
    tokens = Tokenizer::load(a.model).encode(a.prompt, {.parse_special = a.parse_special});
    if (tokens.empty()) throw InvalidArgument("--prompt: the text encodes to no token");
  }
  Logits logits;
  if (a.backend == "hpu-ref") {  // the HPU graphs on the CPU reference device
    require_with(a.o_threads, false, "does not apply to --backend hpu-ref");
    const AnyModel model =
        HpuRefLoader(tokens.size(), hpu_dtype(a.o_dtype, a.dtype)).backend()(a.model).model;
    auto cache = model.make_cache(tokens.size());
    logits = model.forward(tokens, cache);
  } else {
    cpu::LoadOptions opts;
    opts.threads = a.threads;
    if (given(a.o_dtype)) opts.dtype = parse_dtype(a.dtype);
    opts.tensor_parallel = target_group();  // under mpirun: this rank's share
    std::optional<cpu::Transformer> model;
    with_load_progress(a.model, [&](const ProgressSink& sink) {
      opts.on_progress = sink;
      model.emplace(cpu::Transformer::load(a.model, opts));
    });
    announce_split(*model);
    auto cache = model->make_cache(tokens.size());
    logits = model->forward(tokens, cache);
  }
  if (given(a.o_out) && primary_rank())
    write_npy_f32(a.out, logits.data(), logits.rows(), logits.cols());
  auto last = logits.row(logits.rows() - 1);
  const auto best = std::max_element(last.begin(), last.end()) - last.begin();
  std::printf("%td\n", best);
  return 0;
}

}  // namespace

Command add_logits(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* sub = app.add_subcommand("logits", "logits of every position of a token sequence");
  sub->footer(
      "Runs the model once over the input and prints the argmax of the last position's logits.");
  a->o_model = sub->add_option(
      "-m,--model", a->model, "Hugging Face model directory (config.json + safetensors; required)");
  a->o_tokens = sub->add_option("--tokens", a->tokens, "comma-separated token ids, e.g. 1,2,3");
  a->o_prompt = sub->add_option("-p,--prompt", a->prompt,
                                "a text instead, encoded with the model's tokenizer.json as "
                                "generate -p encodes it");
  a->o_parse_special = sub->add_flag("--parse-special", a->parse_special,
                                     "-p: match special-token text as single tokens");
  a->o_out = sub->add_option("-o,--out", a->out,
                             "also write all logits as float32 .npy, shape [n, vocab]");
  a->o_threads = sub->add_option("-t,--threads", a->threads, "threads (0: all cores)")
                     ->check(CLI::Range(0, 1024));
  a->o_dtype =
      sub->add_option("--dtype", a->dtype,
                      "matmul weights: f32, bf16, int8 or int4 (default: bf16 for a checkpoint "
                      "stored in bf16, else f32); --backend hpu-ref: f32 (default), bf16 or fp8")
          ->check(one_of({"f32", "bf16", "int8", "i8", "int4", "i4", "fp8"}));
  sub->add_option("--backend", a->backend,
                  "cpu, or hpu-ref (the HPU backend's static-shape graphs on its CPU reference "
                  "device), to hold the two paths' numerics against each other")
      ->check(one_of({"cpu", "hpu-ref"}))
      ->capture_default_str();
  return {sub, [a] { return run(*a); }};
}

}  // namespace assistgen::cli
