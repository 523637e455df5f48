// The assistgen CLI's pieces: each command registers its options on a CLI11
// subcommand and returns the function that runs it once the command line is
// parsed; helpers shared by the commands.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "assistgen/chat_template.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/tensor_parallel.hpp"
#include "assistgen/types.hpp"

namespace assistgen::cli {

/// A command-line mistake: printed as one line, exit status 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

/// A subcommand: its CLI11 app and what runs it after parsing.
struct Command {
  CLI::App* app;
  std::function<int()> run;
};

Command add_logits(CLI::App& app);
Command add_generate(CLI::App& app);
Command add_tokenize(CLI::App& app);
Command add_detokenize(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_chat(CLI::App& app);
Command add_template(CLI::App& app);
Command add_batch(CLI::App& app);
Command add_serve(CLI::App& app);

/// Registers --stop S (repeatable) on `sub`, filling `stops`; each S must be
/// non-empty (GenerateOptions::stop).
CLI::Option* add_stop_option(CLI::App& sub, std::vector<std::string>& stops);

/// The whole content of the input file `path` given with `option`: a
/// regular file (not a directory, FIFO or device) of at most 64 MiB, else a
/// UsageError naming the option and the file.
std::string read_input_file(const std::string& path, const std::string& option);
/// Parses "1,2,3" into token ids; errors (UsageError) name `option` and the item.
std::vector<Token> parse_token_list(const std::string& s, const std::string& option = "--tokens");
/// The value of --dtype: f32, bf16 or int8 (i8); a UsageError otherwise.
DType parse_dtype(const std::string& s);
/// A CLI11 validator accepting one of `values`; its error quotes the value.
CLI::Validator one_of(std::initializer_list<const char*> values);
/// Whether `opt` was given on the command line.
inline bool given(const CLI::Option* opt) { return opt->count() > 0; }
/// Throws UsageError "OPTION is required" unless `opt` was given. (Checked
/// after parsing rather than by CLI11, so that an unknown option is reported
/// before a missing one.)
void require_option(const CLI::Option* opt);
/// Throws UsageError "`a` needs `b`" when `a` is given and `ok` is false.
void require_with(const CLI::Option* a, bool ok, const std::string& what);

/// The chat template of the model directory `model`, or --template FILE's
/// (`template_file`, with the model's special-token strings); ConfigError
/// naming --template when there is none.
ChatTemplate load_template(const std::string& model, const std::string& template_file);

/// Receives a load's progress (cpu::LoadOptions::on_progress).
using ProgressSink = std::function<void(const LoadProgress&)>;
/// Runs `load` (loading the model directory `dir`, reporting to the sink it
/// is given). On a terminal, a load that takes over a second shows a
/// progress line on stderr (bytes read and tensors packed, the elapsed
/// time), then the load time; elsewhere the sink is empty.
void with_load_progress(const std::filesystem::path& dir,
                        const std::function<void(const ProgressSink&)>& load);

/// -t/--threads, --dtype and --draft-dtype, as the commands that load a
/// target and an optional draft (-a) take them.
struct LoadArgs {
  int threads = 0;
  std::string dtype, draft_dtype;
  CLI::Option* o_dtype = nullptr;
  CLI::Option* o_draft_dtype = nullptr;
  /// Registers -t/--threads, --dtype and --draft-dtype on `sub`.
  void add_to(CLI::App& sub);
  /// The target's options as LoadModelOptions (dtype only when --dtype was given).
  LoadModelOptions options() const;
  /// The draft's: options() with --draft-dtype's precision when it was given.
  LoadModelOptions draft_options() const;
  /// A UsageError naming --draft-dtype when it was given without a draft.
  void check_draft(bool has_draft) const;
};

/// Throws (InvalidArgument / UnsupportedError, naming early_exit) unless
/// `target` can draft for itself with its first `layers` layers.
void check_early_exit(const Model& target, std::size_t layers);

/// load_model(dir, options), with with_load_progress's progress line.
Model load_with_progress(const std::string& dir, const LoadModelOptions& options);
/// The process's place under mpirun (tensor_parallel.cpp, docs/distributed.md),
/// for the life of main(): with more than one rank, MPI runs, stdout of ranks
/// other than 0 goes to /dev/null, and a command other than generate, logits
/// or bench ends every rank with an error. Without a launcher: nothing.
class Ranks {
 public:
  Ranks(int& argc, char**& argv, const std::string& command);
  ~Ranks();
  Ranks(const Ranks&) = delete;
  Ranks& operator=(const Ranks&) = delete;
  /// Rank 0, or no launcher: the rank that prints warnings.
  bool primary() const;
  /// A command's exit `status`; an error (exit 2) when it ran on several
  /// ranks without asking for target_group() (nothing was split).
  int finish(const std::string& command, int status) const;
  /// Prints `line` (stderr) and returns `status`; under mpirun with several
  /// ranks, ends every rank instead (MPI_Abort), the line prefixed with this rank.
  int fail(const std::string& line, int status) const;
};

/// The group to split the target over (cpu::LoadOptions::tensor_parallel):
/// null without mpirun. Marks the command as splitting (Ranks::finish).
std::shared_ptr<RankGroup> target_group();
/// Whether this run is split across ranks.
bool tensor_parallel();
/// Rank 0, or no mpirun: the rank that writes output files.
bool primary_rank();
/// Under mpirun: "tensor parallel: rank R of N, X MB of weights on this rank"
/// on stderr, once a target is loaded.
void announce_split(const cpu::Transformer& model);
void announce_split(const Model& model);
/// Rank 0's `value` on every rank (a random seed must be the same on all).
std::uint64_t same_on_every_rank(std::uint64_t value);
/// Rank 0's `text` on every rank (an input file rank 0 read).
std::string same_on_every_rank(std::string text);

}  // namespace assistgen::cli
