// assistgen logits: logits of every position, optionally saved as .npy.
#include <algorithm>
#include <cstdio>

#include "args.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "commands.hpp"
#include "npy.hpp"

namespace assistgen::cli {

int run_logits(const std::vector<std::string>& argv) {
  Args a(argv, {"--model", "--tokens", "--out", "--threads", "--dtype"}, {},
         {{"-m", "--model"}, {"-o", "--out"}, {"-t", "--threads"}});
  const auto tokens = parse_token_list(a.require("--tokens"));
  cpu::LoadOptions opts;
  opts.threads = static_cast<int>(a.get_int("--threads", 0, 0, 1024));
  if (auto d = a.get("--dtype")) opts.dtype = parse_dtype(*d);
  auto model = cpu::Transformer::load(a.require("--model"), opts);
  auto cache = model.make_cache(tokens.size());
  const Logits logits = model.forward(tokens, cache);
  if (auto out = a.get("--out")) write_npy_f32(*out, logits.data(), logits.rows(), logits.cols());
  auto last = logits.row(logits.rows() - 1);
  const auto best = std::max_element(last.begin(), last.end()) - last.begin();
  std::printf("%td\n", best);
  return 0;
}

}  // namespace assistgen::cli
