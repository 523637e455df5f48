#include "commands.hpp"

namespace assistgen::cli {

namespace {

constexpr const char* kLogitsHelp =
    R"(usage: assistgen logits -m DIR --tokens IDS [--out FILE.npy] [--threads N]

Runs the model once over IDS and prints the argmax of the last position.

  -m, --model DIR     Hugging Face model directory (config.json + safetensors)
      --tokens IDS    comma-separated token ids, e.g. 1,2,3
  -o, --out FILE      also write all logits as float32 .npy, shape [n, vocab]
  -t, --threads N     threads (default: all cores)
      --dtype T       matmul weights: f32, bf16 or int8 (default: bf16 for a
                      checkpoint stored in bf16, else f32)
)";

}  // namespace

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds{
      {"logits", kLogitsHelp, &run_logits},
      {"generate", generate_help(), &run_generate},
      {"bench", bench_help(), &run_bench},
      {"tokenize", tokenize_help(), &run_tokenize},
  };
  return cmds;
}

}  // namespace assistgen::cli
