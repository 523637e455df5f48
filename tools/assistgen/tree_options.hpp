// The tree-draft options shared by `assistgen generate` and `assistgen batch`
// (--tree-nodes, --tree-width, --tree-shape) and the stats they print.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "assistgen/generation_config.hpp"

namespace assistgen::cli {

/// Registers --tree-nodes N, --tree-width W and --tree-shape B1,B2,.. on `sub`.
void add_tree_options(CLI::App& sub, std::size_t& nodes, std::size_t& width, std::string& shape,
                      CLI::Option*& o_nodes, CLI::Option*& o_width, CLI::Option*& o_shape);
/// UsageError when a tree option is given without a draft model (-a), or
/// --tree-width without --tree-nodes.
void check_tree_combination(const CLI::Option* o_nodes, const CLI::Option* o_width,
                            const CLI::Option* o_shape, bool draft_model);
/// Parses --tree-shape "4,2,1" (each entry 1..64, at most 16 levels); a
/// UsageError naming the option otherwise.
std::vector<std::size_t> parse_tree_shape(const std::string& s);
/// Prints "tree: nodes verified per pass ..., mean accepted depth ...,
/// tokens per target pass ...".
void print_tree_stats(const GenerationStats& s);
/// The same figures for --json.
nlohmann::json tree_stats_json(const GenerationStats& s);

}  // namespace assistgen::cli
