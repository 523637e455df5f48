// The tree-draft options of `generate` and `batch` (tree_options.hpp).
#include "tree_options.hpp"

#include <cstdio>

#include "commands.hpp"

namespace assistgen::cli {

void add_tree_options(CLI::App& sub, std::size_t& nodes, std::size_t& width, std::string& shape,
                      CLI::Option*& o_nodes, CLI::Option*& o_width, CLI::Option*& o_shape) {
  o_nodes =
      sub.add_option(
             "--tree-nodes", nodes,
             "tree drafts (-a): verify a tree of N draft tokens per round in one target pass; "
             "--draft-max is its depth (0: a chain)")
          ->check(CLI::Range(std::size_t{0}, std::size_t{4096}))
          ->capture_default_str();
  o_width = sub.add_option("--tree-width", width,
                           "tree drafts: children per expanded node and nodes expanded per level")
                ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
                ->capture_default_str();
  o_shape = sub.add_option("--tree-shape", shape,
                           "a static tree instead: children per node at each depth, e.g. 4,2,1 "
                           "(--tree-nodes, when given, caps its nodes)");
}

void check_tree_combination(const CLI::Option* o_nodes, const CLI::Option* o_width,
                            const CLI::Option* o_shape, bool draft_model) {
  for (const CLI::Option* o : {o_nodes, o_width, o_shape})
    require_with(o, draft_model, "applies only with a draft model (-a)");
  require_with(o_width, given(o_nodes), "needs --tree-nodes N");
}

std::vector<std::size_t> parse_tree_shape(const std::string& s) {
  std::vector<std::size_t> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = std::min(s.find(',', start), s.size());
    const std::string item = s.substr(start, end - start);
    std::size_t v = 0;
    bool ok = !item.empty() && item.size() <= 2;
    for (const char c : item) ok = ok && c >= '0' && c <= '9';
    if (ok) v = std::stoul(item);
    if (!ok || v < 1 || v > 64)
      throw UsageError("--tree-shape: entry '" + item +
                       "' is not a number of children in 1..64 (e.g. 4,2,1)");
    out.push_back(v);
    if (out.size() > 16) throw UsageError("--tree-shape: more than 16 levels");
    start = end + 1;
  }
  return out;
}

void print_tree_stats(const GenerationStats& s) {
  const double rounds = s.rounds ? double(s.rounds) : 1.0;
  std::printf(
      "tree: nodes verified per pass %.2f, mean accepted depth %.2f, tokens per target pass %.2f\n",
      double(s.drafted) / rounds, double(s.accepted) / rounds, s.tokens_per_target_call());
}

nlohmann::json tree_stats_json(const GenerationStats& s) {
  const double rounds = s.rounds ? double(s.rounds) : 1.0;
  return {{"tree_nodes_per_pass", double(s.drafted) / rounds},
          {"tree_mean_accepted_depth", double(s.accepted) / rounds},
          {"tokens_per_target_pass", s.tokens_per_target_call()}};
}

}  // namespace assistgen::cli
