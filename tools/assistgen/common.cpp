// Helpers shared by the CLI's commands (commands.hpp).
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "assistgen/candidates/early_exit.hpp"
#include "assistgen/chat_template.hpp"
#include "commands.hpp"

namespace assistgen::cli {

std::string read_input_file(const std::string& path, const std::string& option) {
  // Prompts, templates and conversations are small; a bigger file is a mistake.
  constexpr std::uintmax_t kMaxBytes = std::uintmax_t{64} << 20;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw UsageError(option + ": '" + path + "' is not a readable file");
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec || size > kMaxBytes) throw UsageError(option + ": '" + path + "' is larger than 64 MiB");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(option + ": cannot read '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) throw IoError(path + ": cannot be read");
  return ss.str();
}

ChatTemplate load_template(const std::string& model, const std::string& template_file) {
  if (!template_file.empty())
    return ChatTemplate::from_string_for(read_input_file(template_file, "--template"), model, template_file);
  if (!ChatTemplate::available(model))
    throw ConfigError(model +
                      " has no chat template (no chat_template in tokenizer_config.json, no "
                      "chat_template.jinja): give one with --template FILE");
  return ChatTemplate::load(model);
}

std::vector<Token> parse_token_list(const std::string& s, const std::string& option) {
  std::vector<Token> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(start, end - start);
    long long v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0 ||
        v > INT32_MAX)
      throw UsageError(option + ": '" + item + "' is not a token id (expected e.g. 1,2,3)");
    out.push_back(static_cast<Token>(v));
    start = end + 1;
  }
  return out;
}

CLI::Option* add_stop_option(CLI::App& sub, std::vector<std::string>& stops) {
  return sub
      .add_option("--stop", stops,
                  "stop when the text reaches S (repeatable; S itself is not printed; a newline "
                  "in bash: --stop $'\\n')")
      ->allow_extra_args(false)
      ->check(CLI::Validator(
          [](const std::string& v) { return v.empty() ? std::string("empty stop string") : ""; },
          "TEXT", "non-empty"));
}

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::f32;
  if (s == "bf16") return DType::bf16;
  if (s == "i8" || s == "int8") return DType::i8;
  if (s == "i4" || s == "int4") return DType::i4;
  if (s == "fp8") throw UsageError("--dtype fp8: only --backend hpu-ref computes with fp8 weights");
  throw UsageError("--dtype: unknown precision '" + s + "' (f32, bf16, int8, int4)");
}

CLI::Validator one_of(std::initializer_list<const char*> values) {
  std::vector<std::string> v(values.begin(), values.end());
  std::string list;
  for (const auto& x : v) list += (list.empty() ? "" : ", ") + x;
  return CLI::Validator(
      [v, list](std::string& s) -> std::string {
        for (const auto& x : v)
          if (s == x) return {};
        return "unknown value '" + s + "' (" + list + ")";
      },
      list);
}

void require_option(const CLI::Option* opt) {
  if (!given(opt)) throw UsageError(opt->get_name() + " is required");
}

void require_with(const CLI::Option* a, bool ok, const std::string& what) {
  if (given(a) && !ok) throw UsageError(a->get_name() + " " + what);
}

void with_load_progress(const std::filesystem::path& dir,
                        const std::function<void(const ProgressSink&)>& load) {
  if (!isatty(STDERR_FILENO)) {
    load({});
    return;
  }
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::mutex m;
  std::condition_variable cv;
  bool done = false, shown = false;
  LoadProgress latest;  // guarded by m
  std::thread ticker([&] {
    std::unique_lock lock(m);
    if (cv.wait_for(lock, std::chrono::seconds(1), [&] { return done; })) return;
    do {
      const double s = std::chrono::duration<double>(clock::now() - t0).count();
      std::fprintf(stderr, "\rloading %s: %.2f / %.2f GB read, %zu / %zu tensors packed, %.1f s ",
                   dir.c_str(), double(latest.bytes_done) / 1e9, double(latest.bytes_total) / 1e9,
                   std::min(latest.tensors_done, latest.tensors_total), latest.tensors_total, s);
      std::fflush(stderr);
      shown = true;
    } while (!cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return done; }));
  });
  auto finish = [&] {
    {
      const std::lock_guard lock(m);
      done = true;
    }
    cv.notify_one();
    ticker.join();
  };
  try {
    load([&](const LoadProgress& p) {
      const std::lock_guard lock(m);
      latest = p;
    });
  } catch (...) {
    finish();
    if (shown) std::fputs("\n", stderr);
    throw;
  }
  finish();
  if (shown)
    std::fprintf(stderr, "\rloaded %s in %.1f s%40s\n", dir.c_str(),
                 std::chrono::duration<double>(clock::now() - t0).count(), "");
}

void LoadArgs::add_to(CLI::App& sub) {
  sub.add_option("-t,--threads", threads, "threads (0: all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  o_dtype = sub.add_option("--dtype", dtype, "matmul weights: f32, bf16, int8 or int4")
                ->check(one_of({"f32", "bf16", "int8", "i8", "int4", "i4"}));
  o_draft_dtype = sub.add_option("--draft-dtype", draft_dtype,
                                 "-a only: the draft's matmul weights, f32, bf16, int8 or int4 "
                                 "(default: as --dtype); the output stays the target's")
                      ->check(one_of({"f32", "bf16", "int8", "i8", "int4", "i4"}));
}

LoadModelOptions LoadArgs::options() const {
  LoadModelOptions lo;
  lo.threads = threads;
  if (given(o_dtype)) lo.dtype = parse_dtype(dtype);
  return lo;
}

LoadModelOptions LoadArgs::draft_options() const {
  LoadModelOptions lo = options();
  if (given(o_draft_dtype)) lo.dtype = parse_dtype(draft_dtype);
  return lo;
}

void LoadArgs::check_draft(bool has_draft) const {
  require_with(o_draft_dtype, has_draft, "applies only with a draft model (-a)");
}

void check_early_exit(const Model& target, std::size_t layers) {
  const EarlyExitCandidates<AnyModel> check(target.backend(), layers);  // checks in its constructor
}

Model load_with_progress(const std::string& dir, const LoadModelOptions& options) {
  std::optional<Model> m;
  with_load_progress(dir, [&](const ProgressSink& sink) {
    LoadModelOptions l = options;
    l.on_progress = sink;
    m.emplace(load_model(dir, l));
  });
  return std::move(*m);
}

}  // namespace assistgen::cli
