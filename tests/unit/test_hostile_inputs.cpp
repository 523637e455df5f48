// Hostile inputs, round two (issue #23): the classes the first malformed
// matrix (test_malformed_matrix.cpp) did not reach. Each row either ends in
// one specific assistgen::Error whose message names the file, field, tensor or
// option at fault (and is one line: no control characters), or is a correct
// acceptance whose result is checked. Every row runs under a resource guard
// (run_bounded): it must finish in under 5 s of CPU time (60 s of wall time) and the process's peak resident
// memory must stay under 1 GB (getrusage), in Release; under a sanitizer the
// bounds are relaxed for the instrumentation, the rows themselves are not.
//
// Classes: JSON nesting depth; files that are not regular files or are
// huge; non-finite weights and logits; tokenizer complexity; allocation
// before validation; error text.
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "assistgen/model_config.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/io/safetensors.hpp"
#include "assistgen/sampling/distribution.hpp"
#include "assistgen/tokenizer.hpp"

using namespace assistgen;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// The resource bounds of one row (Release): 5 s of CPU time (the process's,
// all threads: the work a row costs, whatever else shares the machine), 1 GB
// of peak RSS; and, against a row that waits instead of working (a FIFO
// opened for reading), 60 s of wall time.
constexpr double kMaxSeconds = kSanitized ? 60.0 : 5.0;
constexpr double kMaxWallSeconds = kSanitized ? 300.0 : 60.0;
constexpr long kMaxRssKiB = kSanitized ? 4L << 20 : 1L << 20;

struct ResourceLog {
  std::size_t rows = 0;
  double max_seconds = 0;
  std::string slowest;
  long max_rss_kib = 0;
  ~ResourceLog() {
    if (rows > 0)
      std::printf("hostile inputs: %zu rows, slowest %.3f s of CPU (%s), peak RSS %.1f MiB\n", rows,
                  max_seconds, slowest.c_str(), static_cast<double>(max_rss_kib) / 1024.0);
  }
};
ResourceLog g_log;

long peak_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;  // KiB on Linux
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Runs one row and checks its time and the process's peak memory after it.
void run_bounded(const std::string& row, const std::function<void()>& f) {
  INFO("row: " << row);
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = process_cpu_seconds();
  f();
  const double s = process_cpu_seconds() - c0;
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long rss = peak_rss_kib();
  ++g_log.rows;
  if (s > g_log.max_seconds) {
    g_log.max_seconds = s;
    g_log.slowest = row;
  }
  g_log.max_rss_kib = std::max(g_log.max_rss_kib, rss);
  CHECK(s < kMaxSeconds);
  CHECK(wall < kMaxWallSeconds);
  CHECK(rss < kMaxRssKiB);
}

bool has_control(const std::string& s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7F) return true;
  }
  return false;
}

// Requires an exception of exactly the family E whose message contains every
// needle and no control character; anything else fails the row.
template <class E, class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
  } catch (const E& e) {
    const std::string what = e.what();
    INFO("message: " << what);
    for (const auto& n : needles) CHECK_THAT(what, Catch::Contains(n));
    CHECK_FALSE(has_control(what));
    return;
  } catch (const std::exception& e) {
    FAIL("wrong exception type, message: " << e.what());
  }
  FAIL("no exception");
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() /
           ("assistgen-hostile-" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const fs::path kData = fs::path(ASSISTGEN_TEST_DATA_DIR);
const fs::path kModels = kData / "models";
const fs::path kTokenizers = kData / "tokenizers";

// `depth` nested arrays (or objects) around `inner`.
std::string nested(std::size_t depth, bool objects, const std::string& inner = "0") {
  std::string s;
  s.reserve(depth * 6 + inner.size());
  for (std::size_t i = 0; i < depth; ++i) s += objects ? "{\"k\":" : "[";
  s += inner;
  for (std::size_t i = 0; i < depth; ++i) s += objects ? "}" : "]";
  return s;
}

std::string le64(std::uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A three-token BPE tokenizer.json (a, b, ab and the special <eos>).
json tiny_tokenizer() {
  return json{{"version", "1.0"},
              {"added_tokens", json::array({{{"id", 3},
                                             {"content", "<eos>"},
                                             {"single_word", false},
                                             {"lstrip", false},
                                             {"rstrip", false},
                                             {"normalized", false},
                                             {"special", true}}})},
              {"normalizer", nullptr},
              {"pre_tokenizer", nullptr},
              {"post_processor", nullptr},
              {"decoder", nullptr},
              {"model",
               {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}},
                {"merges", json::array({"a b"})}}}};
}

Tokenizer tokenizer_from(const json& j, const std::string& cfg = "", const std::string& gen = "") {
  return Tokenizer::from_json(j.dump(), cfg, gen, "hostile/tokenizer.json");
}

json base_config() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 256},
              {"hidden_size", 64},
              {"intermediate_size", 128},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 2},
              {"eos_token_id", 2}};
}

// A copy of a test model directory (config.json + model.safetensors).
struct ModelCopy {
  TempDir dir;
  explicit ModelCopy(const std::string& name) {
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(kModels / name / f, dir.path / f);
  }
  const fs::path& path() const { return dir.path; }
};

// A copy of model `name` whose tensors went through `edit` and config through `edit_config`.
struct EditedModel {
  TempDir dir;
  EditedModel(const std::string& name,
              const std::function<void(std::vector<io::TensorView>&,
                                       std::vector<std::vector<std::byte>>& store)>& edit,
              const std::function<void(json&)>& edit_config = {}) {
    const fs::path src = kModels / name;
    json cfg = json::parse(read_text(src / "config.json"));
    if (edit_config) edit_config(cfg);
    write_file(dir.path / "config.json", cfg.dump(2));
    const io::Checkpoint ck(src);
    std::vector<io::TensorView> tensors;
    for (const auto& n : ck.names()) tensors.push_back(ck.tensor(n));
    std::vector<std::vector<std::byte>> store;
    store.reserve(16);
    edit(tensors, store);
    io::write_safetensors(dir.path / "model.safetensors", tensors);
  }
  const fs::path& path() const { return dir.path; }
};

io::TensorView& find(std::vector<io::TensorView>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return t;
  FAIL("test model has no tensor " << name);
  throw;  // unreachable
}

// Overwrites element `index` of tensor `name` (any float dtype) with `value`,
// on a private copy of its bytes.
auto poison(const std::string& name, std::size_t index, float value) {
  return [=](std::vector<io::TensorView>& ts, std::vector<std::vector<std::byte>>& store) {
    io::TensorView& t = find(ts, name);
    store.emplace_back(t.data.begin(), t.data.end());
    std::byte* p = store.back().data();
    if (t.dtype == DType::f32) {
      std::memcpy(p + 4 * index, &value, 4);
    } else {
      const std::uint16_t h =
          t.dtype == DType::bf16 ? io::float_to_bf16(value) : io::float_to_f16(value);
      std::memcpy(p + 2 * index, &h, 2);
    }
    t.data = std::span<const std::byte>(store.back().data(), store.back().size());
  };
}

// Multiplies every element of tensor `name` (f32) by `factor`.
auto scale(const std::string& name, float factor) {
  return [=](std::vector<io::TensorView>& ts, std::vector<std::vector<std::byte>>& store) {
    io::TensorView& t = find(ts, name);
    REQUIRE(t.dtype == DType::f32);
    store.emplace_back(t.data.begin(), t.data.end());
    auto* f = reinterpret_cast<float*>(store.back().data());
    for (std::size_t i = 0; i < store.back().size() / 4; ++i) f[i] *= factor;
    t.data = std::span<const std::byte>(store.back().data(), store.back().size());
  };
}

void make_fifo(const fs::path& p) { REQUIRE(::mkfifo(p.c_str(), 0600) == 0); }

// Replaces `p` by something that is not a regular file of reasonable size.
enum class Odd { directory, fifo, dev_zero, dev_urandom, dangling_dir_link, huge_sparse };
const char* odd_name(Odd o) {
  switch (o) {
    case Odd::directory: return "a directory";
    case Odd::fifo: return "a FIFO";
    case Odd::dev_zero: return "a link to /dev/zero";
    case Odd::dev_urandom: return "a link to /dev/urandom";
    case Odd::dangling_dir_link: return "a link to a directory";
    case Odd::huge_sparse: return "a 300 MiB sparse file";
  }
  return "?";
}
void make_odd(const fs::path& p, Odd o) {
  std::error_code ec;
  fs::remove(p, ec);
  switch (o) {
    case Odd::directory: fs::create_directory(p); break;
    case Odd::fifo: make_fifo(p); break;
    case Odd::dev_zero: fs::create_symlink("/dev/zero", p); break;
    case Odd::dev_urandom: fs::create_symlink("/dev/urandom", p); break;
    case Odd::dangling_dir_link:
      fs::create_directory(p.string() + ".d");
      fs::create_symlink(p.string() + ".d", p);
      break;
    case Odd::huge_sparse: {
      { std::ofstream(p) << "{"; }
      fs::resize_file(p, std::uintmax_t{300} << 20);
      break;
    }
  }
}
// What the message must say for `o`.
std::string odd_needle(Odd o) {
  switch (o) {
    case Odd::directory:
    case Odd::dangling_dir_link: return "a directory";
    case Odd::fifo: return "a FIFO";
    case Odd::dev_zero:
    case Odd::dev_urandom: return "a character device";
    case Odd::huge_sparse: return "above the limit";
  }
  return "?";
}
// The error class for `o`: a file of the wrong type is an IoError, an
// oversized one a FormatError.
template <class F>
void expect_odd(Odd o, F&& f, const std::string& file) {
  if (o == Odd::huge_sparse)
    expect_error<FormatError>(f, {file, odd_needle(o)});
  else
    expect_error<IoError>(f, {file, odd_needle(o)});
}
constexpr Odd kOdds[] = {Odd::directory,   Odd::fifo,
                         Odd::dev_zero,    Odd::dev_urandom,
                         Odd::dangling_dir_link, Odd::huge_sparse};

}  // namespace

// ===========================================================================
// 1. Nesting depth: every JSON reader stops at 64 levels, so nothing
//    recursive (dump() in a message, a Sequence loader) can overflow.

TEST_CASE("hostile: JSON nesting in config.json", "[hostile][depth]") {
  for (const bool objects : {false, true}) {
    for (const std::size_t depth : {65u, 1000u, 300000u}) {
      const std::string row = std::string("config.json field nested ") + std::to_string(depth) +
                              (objects ? " objects" : " arrays");
      DYNAMIC_SECTION(row) {
        run_bounded(row, [&] {
          std::string text = base_config().dump();
          text.insert(text.size() - 1, ",\"vocab_size_x\":" + nested(depth, objects));
          expect_error<ConfigError>([&] { ModelConfig::parse(text, "hostile/config.json"); },
                                    {"hostile/config.json", "nested deeper than 64"});
        });
      }
    }
  }
  SECTION("a field of the wrong type holding a deep value names the field, not a crash") {
    run_bounded("config.json vocab_size = deep array", [] {
      std::string text = base_config().dump();
      const auto at = text.find("\"vocab_size\":256");
      REQUIRE(at != std::string::npos);
      text.replace(at, 16, "\"vocab_size\":" + nested(200000, false));
      expect_error<ConfigError>([&] { ModelConfig::parse(text, "hostile/config.json"); },
                                {"hostile/config.json", "nested deeper"});
    });
  }
  SECTION("64 levels are accepted") {
    run_bounded("config.json with an unused field nested 63 deep", [] {
      std::string text = base_config().dump();
      text.insert(text.size() - 1, ",\"extra\":" + nested(63, true));
      const ModelConfig c = ModelConfig::parse(text, "hostile/config.json");
      CHECK(c.vocab_size == 256);
    });
  }
  SECTION("a deep config.json on disk") {
    run_bounded("config.json on disk nested 100000", [] {
      TempDir d;
      write_file(d.path / "config.json", nested(100000, true));
      const std::string f = (d.path / "config.json").string();
      expect_error<ConfigError>([&] { ModelConfig::load(d.path / "config.json"); },
                                {f, "nested deeper"});
    });
  }
}

TEST_CASE("hostile: JSON nesting in safetensors headers and indexes", "[hostile][depth]") {
  struct Row {
    const char* name;
    std::string header;
  };
  const std::string deep = nested(200000, false);
  const Row rows[] = {
      {"header itself nested", nested(100000, true)},
      {"tensor shape nested",
       R"({"w":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})"},
      {"data_offsets nested",
       R"({"w":{"dtype":"F32","shape":[1],"data_offsets":)" + deep + "}}"},
      {"__metadata__ value nested", R"({"__metadata__":{"k":)" + deep + "}}"},
      {"dtype nested", R"({"w":{"dtype":)" + nested(70, true) + R"(,"shape":[1],"data_offsets":[0,4]}})"},
  };
  for (const Row& r : rows) {
    DYNAMIC_SECTION(r.name) {
      run_bounded(std::string("safetensors ") + r.name, [&] {
        TempDir d;
        const fs::path p = d.path / "model.safetensors";
        write_file(p, le64(r.header.size()) + r.header + std::string(4, '\0'));
        expect_error<FormatError>([&] { io::SafetensorsFile f(p); },
                                  {p.string(), "nested deeper than 64"});
      });
    }
  }
  SECTION("model.safetensors.index.json nested") {
    run_bounded("index nested", [] {
      TempDir d;
      const fs::path p = d.path / "model.safetensors.index.json";
      write_file(p, R"({"weight_map":)" + nested(100000, true) + "}");
      expect_error<FormatError>([&] { io::Checkpoint ck(d.path); },
                                {p.string(), "nested deeper"});
    });
  }
}

TEST_CASE("hostile: JSON nesting in generation_config.json", "[hostile][depth]") {
  for (const char* field : {"eos_token_id", "temperature", "num_assistant_tokens_schedule", "x"}) {
    DYNAMIC_SECTION(field) {
      run_bounded(std::string("generation_config ") + field, [&] {
        const std::string text = std::string("{\"") + field + "\":" + nested(200000, false) + "}";
        expect_error<ConfigError>(
            [&] { GenerateOptions::parse_generation_config(text, "hostile/generation_config.json"); },
            {"hostile/generation_config.json", "nested deeper"});
      });
    }
  }
}

TEST_CASE("hostile: JSON nesting in tokenizer files", "[hostile][depth]") {
  auto seq = [](const char* type, const char* list, std::size_t depth) {
    json inner = type == std::string("normalizer") ? json{{"type", "Lowercase"}}
                 : type == std::string("decoder")  ? json{{"type", "Fuse"}}
                 : type == std::string("pre_tokenizer")
                     ? json{{"type", "Digits"}, {"individual_digits", false}}
                     : json{{"type", "ByteLevel"}};
    // Built as text: nlohmann would recurse to build it as a value.
    std::string s = inner.dump();
    for (std::size_t i = 0; i < depth; ++i)
      s = std::string("{\"type\":\"Sequence\",\"") + list + "\":[" + s + "]}";
    return s;
  };
  struct Row {
    const char* key;
    const char* list;
  };
  const Row rows[] = {{"normalizer", "normalizers"},
                      {"pre_tokenizer", "pretokenizers"},
                      {"decoder", "decoders"},
                      {"post_processor", "processors"}};
  for (const Row& r : rows) {
    for (const std::size_t depth : {40u, 5000u}) {
      const std::string row = std::string(r.key) + " Sequence nested " + std::to_string(depth);
      DYNAMIC_SECTION(row) {
        run_bounded(row, [&] {
          std::string text = tiny_tokenizer().dump();
          const std::string key = std::string("\"") + r.key + "\":null";
          const auto at = text.find(key);
          REQUIRE(at != std::string::npos);
          text.replace(at, key.size(), std::string("\"") + r.key + "\":" + seq(r.key, r.list, depth));
          expect_error<FormatError>(
              [&] { Tokenizer::from_json(text, "", "", "hostile/tokenizer.json"); },
              {"hostile/tokenizer.json", "nested deeper than 64"});
        });
      }
    }
    const std::string ok_row = std::string(r.key) + " Sequence nested 20 (accepted)";
    DYNAMIC_SECTION(ok_row) {
      run_bounded(ok_row, [&] {
        std::string text = tiny_tokenizer().dump();
        const std::string key = std::string("\"") + r.key + "\":null";
        const auto at = text.find(key);
        text.replace(at, key.size(), std::string("\"") + r.key + "\":" + seq(r.key, r.list, 20));
        const Tokenizer t = Tokenizer::from_json(text, "", "", "hostile/tokenizer.json");
        const std::vector<Token> ids = t.encode("ab", {.add_special_tokens = false});
        CHECK(ids == std::vector<Token>{2});
      });
    }
  }
  SECTION("a vocabulary entry nested deep") {
    run_bounded("vocab value nested", [] {
      std::string text = tiny_tokenizer().dump();
      const auto at = text.find("\"ab\":2");
      REQUIRE(at != std::string::npos);
      text.replace(at, 6, "\"ab\":" + nested(300000, false));
      expect_error<FormatError>([&] { Tokenizer::from_json(text, "", "", "hostile/tokenizer.json"); },
                                {"hostile/tokenizer.json", "nested deeper"});
    });
  }
  SECTION("tokenizer_config.json nested deep") {
    run_bounded("tokenizer_config nested", [] {
      const std::string cfg = R"({"bos_token":)" + nested(300000, true) + "}";
      expect_error<FormatError>([&] { tokenizer_from(tiny_tokenizer(), cfg); },
                                {"tokenizer_config.json", "nested deeper"});
    });
  }
  SECTION("generation_config.json (tokenizer side) nested deep") {
    run_bounded("tokenizer's generation_config nested", [] {
      const std::string gen = R"({"eos_token_id":)" + nested(300000, false) + "}";
      expect_error<FormatError>([&] { tokenizer_from(tiny_tokenizer(), "", gen); },
                                {"generation_config.json", "nested deeper"});
    });
  }
}

// ===========================================================================
// 2. Files that are not regular files, or are huge: refused before a byte is
//    read (no hang on a FIFO, no endless read of /dev/zero).

TEST_CASE("hostile: config.json that is not a regular file", "[hostile][files]") {
  for (const Odd o : kOdds) {
    DYNAMIC_SECTION("config.json is " << odd_name(o)) {
      run_bounded(std::string("config.json is ") + odd_name(o), [&] {
        ModelCopy m("llama-draft");
        const fs::path p = m.path() / "config.json";
        make_odd(p, o);
        expect_odd(o, [&] { ModelConfig::load(p); }, p.string());
        expect_odd(o, [&] { cpu::Transformer::load(m.path()); }, p.string());
      });
    }
  }
}

TEST_CASE("hostile: tokenizer files that are not regular files", "[hostile][files]") {
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"}) {
    for (const Odd o : kOdds) {
      DYNAMIC_SECTION(file << " is " << odd_name(o)) {
        run_bounded(std::string(file) + " is " + odd_name(o), [&] {
          TempDir d;
          write_file(d.path / "tokenizer.json", tiny_tokenizer().dump());
          const fs::path p = d.path / file;
          make_odd(p, o);
          expect_odd(o, [&] { Tokenizer::load(d.path); }, p.string());
        });
      }
    }
  }
  SECTION("tokenizer.json missing") {
    run_bounded("tokenizer.json missing", [] {
      TempDir d;
      expect_error<IoError>([&] { Tokenizer::load(d.path); }, {"tokenizer.json", "no such file"});
    });
  }
}

TEST_CASE("hostile: generation_config.json that is not a regular file", "[hostile][files]") {
  for (const Odd o : kOdds) {
    DYNAMIC_SECTION("generation_config.json is " << odd_name(o)) {
      run_bounded(std::string("generation_config.json is ") + odd_name(o), [&] {
        TempDir d;
        const fs::path p = d.path / "generation_config.json";
        make_odd(p, o);
        expect_odd(o, [&] { GenerateOptions::load_generation_config(p); }, p.string());
      });
    }
  }
}

TEST_CASE("hostile: safetensors files, indexes and shards that are not regular files",
          "[hostile][files]") {
  for (const Odd o : {Odd::directory, Odd::fifo, Odd::dev_zero, Odd::dangling_dir_link}) {
    DYNAMIC_SECTION("model.safetensors is " << odd_name(o)) {
      run_bounded(std::string("model.safetensors is ") + odd_name(o), [&] {
        ModelCopy m("llama-draft");
        const fs::path p = m.path() / "model.safetensors";
        make_odd(p, o);
        expect_error<IoError>([&] { io::Checkpoint ck(m.path()); },
                              {p.string(), "is " + odd_needle(o), "expected a safetensors file"});
      });
    }
  }
  for (const Odd o : kOdds) {
    DYNAMIC_SECTION("model.safetensors.index.json is " << odd_name(o)) {
      run_bounded(std::string("index is ") + odd_name(o), [&] {
        TempDir d;
        const fs::path p = d.path / "model.safetensors.index.json";
        make_odd(p, o);
        expect_odd(o, [&] { io::Checkpoint ck(d.path); }, p.string());
      });
    }
  }
  for (const Odd o : {Odd::directory, Odd::fifo, Odd::dev_zero}) {
    DYNAMIC_SECTION("a shard is " << odd_name(o)) {
      run_bounded(std::string("shard is ") + odd_name(o), [&] {
        TempDir d;
        write_file(d.path / "model.safetensors.index.json",
                   R"({"weight_map":{"w":"model-00001.safetensors"}})");
        make_odd(d.path / "model-00001.safetensors", o);
        expect_error<FormatError>([&] { io::Checkpoint ck(d.path); },
                                  {"model-00001.safetensors",
                                   o == Odd::directory ? "is a directory" : "not a regular file"});
      });
    }
  }
  SECTION("a shard that is missing is still reported as missing") {
    run_bounded("shard missing", [] {
      TempDir d;
      write_file(d.path / "model.safetensors.index.json",
                 R"({"weight_map":{"w":"model-00001.safetensors"}})");
      expect_error<FormatError>([&] { io::Checkpoint ck(d.path); },
                                {"model-00001.safetensors", "does not exist"});
    });
  }
}

// ===========================================================================
// 3. Non-finite weights: refused at load, naming the file, tensor and
//    element; non-finite logits from finite weights: an error naming the
//    model and the position; argmax never skips a NaN.

TEST_CASE("hostile: non-finite weights are refused at load", "[hostile][finite]") {
  struct Row {
    const char* model;
    const char* tensor;
    std::size_t index;
    float value;
    const char* needle;
    std::optional<DType> dtype;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const Row rows[] = {
      {"llama-draft", "model.embed_tokens.weight", 5, nan, "NaN", std::nullopt},
      {"llama-draft", "model.embed_tokens.weight", 0, -inf, "-inf", std::nullopt},
      {"llama-draft", "model.layers.0.self_attn.q_proj.weight", 17, inf, "+inf", std::nullopt},
      {"llama-draft", "model.layers.0.mlp.down_proj.weight", 3, nan, "NaN", DType::i8},
      {"llama-draft", "model.layers.0.mlp.gate_proj.weight", 3, inf, "+inf", DType::i8},
      {"llama-draft", "model.layers.0.input_layernorm.weight", 1, nan, "NaN", std::nullopt},
      {"llama-draft", "model.norm.weight", 0, inf, "+inf", DType::bf16},
      {"llama-draft", "lm_head.weight", 7, nan, "NaN", DType::bf16},
      {"llama-tied-bf16", "model.embed_tokens.weight", 9, nan, "NaN", std::nullopt},
      {"mistral-f16", "model.layers.0.self_attn.v_proj.weight", 2, inf, "+inf", std::nullopt},
      {"qwen2-bias", "model.layers.0.self_attn.k_proj.bias", 0, nan, "NaN", std::nullopt},
      {"gpt2-draft", "transformer.h.0.attn.c_attn.weight", 4, nan, "NaN", std::nullopt},
      {"gpt2-draft", "transformer.wpe.weight", 0, inf, "+inf", std::nullopt},
  };
  for (const Row& r : rows) {
    const std::string row = std::string(r.model) + " " + r.tensor + " holds " + r.needle +
                            (r.dtype ? " (load as " + std::string(dtype_name(*r.dtype)) + ")" : std::string());
    DYNAMIC_SECTION(row) {
      run_bounded(row, [&] {
        EditedModel m(r.model, poison(r.tensor, r.index, r.value));
        cpu::LoadOptions lo;
        lo.dtype = r.dtype;
        expect_error<FormatError>([&] { cpu::Transformer::load(m.path(), lo); },
                                  {"model.safetensors", std::string("tensor '") + r.tensor + "'",
                                   r.needle, "must be finite"});
      });
    }
  }
}

TEST_CASE("hostile: logits that overflow are an error naming the model and position",
          "[hostile][finite]") {
  run_bounded("final norm and lm_head scaled by 1e30", [] {
    EditedModel m("llama-draft", [](std::vector<io::TensorView>& ts,
                                    std::vector<std::vector<std::byte>>& store) {
      scale("model.norm.weight", 1e30f)(ts, store);
      scale("lm_head.weight", 1e30f)(ts, store);
    });
    const cpu::Transformer t = cpu::Transformer::load(m.path());
    auto cache = t.make_cache(8);
    const std::vector<Token> ids = {1, 2, 3};
    expect_error<FormatError>([&] { (void)t.forward(ids, cache); },
                              {m.path().string(), "logits at position", "not finite"});
    CHECK(cache.size() == 0);  // left unchanged
  });
}

TEST_CASE("hostile: argmax never skips NaN or +inf", "[hostile][finite]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Row {
    const char* name;
    std::vector<float> logits;
    const char* needle;
  };
  const Row rows[] = {
      {"NaN after the maximum", {1.0f, 5.0f, nan, 2.0f}, "token id 2 has NaN"},
      {"NaN first", {nan, 1.0f}, "token id 0 has NaN"},
      {"all NaN", {nan, nan, nan}, "token id 0 has NaN"},
      {"+inf", {0.0f, inf}, "token id 1 has +inf"},
  };
  for (const Row& r : rows) {
    DYNAMIC_SECTION(r.name) {
      run_bounded(std::string("argmax ") + r.name, [&] {
        expect_error<InvalidArgument>([&] { (void)argmax(r.logits); }, {r.needle, "not finite"});
      });
    }
  }
  SECTION("all -inf is still 'every token is masked'") {
    run_bounded("argmax all -inf", [&] {
      const std::vector<float> x(4, -inf);
      expect_error<InvalidArgument>([&] { (void)argmax(x); }, {"every token is masked"});
    });
  }
  SECTION("-inf entries (masks) are fine") {
    run_bounded("argmax with masks", [&] {
      const std::vector<float> x = {-inf, 0.5f, -inf, 0.25f};
      CHECK(argmax(x) == 1);
    });
  }
}

// ===========================================================================
// 4. Tokenizer complexity: encode stays linear in the prompt whatever the
//    added tokens, the regex or the normalizer chain.

TEST_CASE("hostile: many added tokens sharing a first byte", "[hostile][tokenizer]") {
  run_bounded("20000 added tokens, 400 KB prompt", [] {
    json j = tiny_tokenizer();
    for (int i = 0; i < 20000; ++i)
      j["added_tokens"].push_back({{"id", 4 + i},
                                   {"content", "a" + std::to_string(i) + "z"},
                                   {"single_word", false},
                                   {"lstrip", false},
                                   {"rstrip", false},
                                   {"normalized", false},
                                   {"special", false}});
    const Tokenizer t = tokenizer_from(j);
    std::string prompt;
    for (int i = 0; i < 40000; ++i) prompt += "a19999z" "ab" "a";
    const std::vector<Token> ids = t.encode(prompt, {.add_special_tokens = false});
    // per repetition: the added token a19999z (id 4 + 19999), then "aba" = ab, a
    REQUIRE(ids.size() == 3 * 40000);
    for (std::size_t k = 0; k < ids.size(); k += 3) {
      if (ids[k] != 4 + 19999 || ids[k + 1] != 2 || ids[k + 2] != 0) FAIL("wrong ids at " << k);
    }
  });
  SECTION("an added token longer than 256 bytes") {
    run_bounded("added token of 300 bytes", [] {
      json j = tiny_tokenizer();
      j["added_tokens"][0]["content"] = std::string(300, 'q');
      expect_error<FormatError>([&] { tokenizer_from(j); },
                                {"hostile/tokenizer.json", "added_tokens[0].content", "limit"});
    });
  }
  SECTION("a prompt of near-misses of a long added token") {
    run_bounded("256-byte added token, 1 MB of near misses", [] {
      json j = tiny_tokenizer();
      j["added_tokens"][0]["content"] = std::string(255, 'a') + "b";
      const Tokenizer t = tokenizer_from(j);
      const std::string prompt(1 << 20, 'a');
      const auto ids = t.encode(prompt, {.add_special_tokens = false});
      CHECK(ids.size() == prompt.size());  // every 'a' alone (no pre-tokenizer: one word, merges a+b only)
    });
  }
}

TEST_CASE("hostile: Split regexes whose matching would be quadratic", "[hostile][tokenizer]") {
  struct Row {
    const char* pattern;
    const char* behavior;
    std::string text;
  };
  const Row rows[] = {
      {R"(\w+X)", "Isolated", std::string(1 << 20, 'a')},
      {R"(a*b)", "Removed", std::string(1 << 20, 'a')},
      {R"([ab]+c|b)", "MergedWithNext", std::string(1 << 19, 'a') + "b"},
      {R"(\s+(?!\S)|\s+)", "Isolated", std::string(1 << 20, ' ')},
      {R"((?=a*$)a)", "Isolated", std::string(1 << 18, 'a') + "b"},
  };
  for (const Row& r : rows) {
    const std::string row = std::string("Split ") + r.pattern + " over " +
                            std::to_string(r.text.size()) + " bytes";
    DYNAMIC_SECTION(row) {
      run_bounded(row, [&] {
        json j = tiny_tokenizer();
        j["pre_tokenizer"] = {{"type", "Split"},
                              {"pattern", {{"Regex", r.pattern}}},
                              {"behavior", r.behavior},
                              {"invert", false}};
        const Tokenizer t = tokenizer_from(j);
        const auto ids = t.encode(r.text, {.add_special_tokens = false});
        CHECK(ids.size() <= r.text.size());
      });
    }
  }
  SECTION("catastrophic backtracking is a clear error, not a hang") {
    run_bounded("Split (a+)+$", [] {
      json j = tiny_tokenizer();
      j["pre_tokenizer"] = {{"type", "Split"},
                            {"pattern", {{"Regex", "(a|aa)+$"}}},
                            {"behavior", "Isolated"},
                            {"invert", false}};
      const Tokenizer t = tokenizer_from(j);
      const std::string text = std::string(3000, 'a') + "b";
      try {
        const auto ids = t.encode(text, {.add_special_tokens = false});
        CHECK(ids.size() <= text.size());
      } catch (const CapacityError& e) {
        CHECK_THAT(e.what(), Catch::Contains("pre_tokenizer.pattern"));
        CHECK_THAT(e.what(), Catch::Contains("limit"));
      }
    });
  }
  SECTION("long inputs through the real tokenizers round-trip") {
    for (const char* name : {"gpt2-8k", "llama3-8k"}) {
      const Tokenizer t = Tokenizer::load(kTokenizers / name);
      const std::string inputs[] = {std::string(1 << 20, ' '), std::string(1 << 20, 'x'),
                                    std::string(1 << 19, '7'), std::string(300000, '\n')};
      for (std::size_t k = 0; k < std::size(inputs); ++k) {
        run_bounded(std::string(name) + " long input " + std::to_string(k), [&] {
          const auto ids = t.encode(inputs[k], {.add_special_tokens = false});
          CHECK(t.decode(ids, false) == inputs[k]);
        });
      }
    }
  }
}

TEST_CASE("hostile: normalizers and decoders that multiply the text", "[hostile][tokenizer]") {
  SECTION("40 chained Replace a -> aa") {
    run_bounded("chained Replace normalizers", [] {
      json j = tiny_tokenizer();
      json seq = json::array();
      for (int i = 0; i < 40; ++i)
        seq.push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aa"}});
      j["normalizer"] = {{"type", "Sequence"}, {"normalizers", seq}};
      const Tokenizer t = tokenizer_from(j);
      expect_error<FormatError>([&] { (void)t.encode("ab"); },
                                {"normalizer Sequence", "multiply"});
    });
  }
  SECTION("an empty pattern replaced by 64 KiB") {
    run_bounded("empty-pattern Replace", [] {
      json j = tiny_tokenizer();
      j["normalizer"] = {
          {"type", "Replace"}, {"pattern", {{"String", ""}}}, {"content", std::string(65536, 'a')}};
      const Tokenizer t = tokenizer_from(j);
      expect_error<FormatError>([&] { (void)t.encode(std::string(1000, 'b')); },
                                {"hostile/tokenizer.json", "normalizer.pattern", "multiply"});
    });
  }
  SECTION("a Replace that grows within the limit is applied") {
    run_bounded("Replace b -> ab", [] {
      json j = tiny_tokenizer();
      j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", "b"}}}, {"content", "ab"}};
      const Tokenizer t = tokenizer_from(j);
      CHECK(t.encode("b", {.add_special_tokens = false}) == std::vector<Token>{2});
    });
  }
  SECTION("40 chained Replace decoders") {
    run_bounded("chained Replace decoders", [] {
      json j = tiny_tokenizer();
      json seq = json::array();
      for (int i = 0; i < 40; ++i)
        seq.push_back({{"type", "Replace"}, {"pattern", {{"String", "a"}}}, {"content", "aa"}});
      j["decoder"] = {{"type", "Sequence"}, {"decoders", seq}};
      const Tokenizer t = tokenizer_from(j);
      const std::vector<Token> ids(100, 2);
      expect_error<FormatError>([&] { (void)t.decode(ids); }, {"decoder Sequence", "multiply"});
    });
  }
  SECTION("an empty Metaspace replacement in the decoder") {
    run_bounded("Metaspace decoder with empty replacement", [] {
      json j = tiny_tokenizer();
      j["decoder"] = {{"type", "Metaspace"}, {"replacement", ""}, {"prepend_scheme", "always"}};
      expect_error<FormatError>([&] { tokenizer_from(j); },
                                {"hostile/tokenizer.json", "decoder.replacement", "must not be empty"});
    });
  }
}

// ===========================================================================
// 5. Allocation before validation: a config that claims huge sizes over a
//    tiny file is a FormatError, never std::bad_alloc.

TEST_CASE("hostile: config sizes far beyond the checkpoint", "[hostile][alloc]") {
  struct Row {
    const char* name;
    std::function<void(json&)> edit;
    const char* needle;
  };
  const Row rows[] = {
      {"vocab 2^24, hidden 65536",
       [](json& c) {
         c["vocab_size"] = 1 << 24;
         c["hidden_size"] = 65536;
         c["head_dim"] = 8;
       },
       "model.embed_tokens.weight"},
      {"intermediate 2^20", [](json& c) { c["intermediate_size"] = 1 << 20; }, "mlp"},
      {"vocab 2^24 only", [](json& c) { c["vocab_size"] = 1 << 24; }, "model.embed_tokens.weight"},
      {"1024 layers", [](json& c) { c["num_hidden_layers"] = 1024; }, "model.layers.1."},
      {"1024 heads of 64", [](json& c) {
         c["num_attention_heads"] = 1024;
         c["num_key_value_heads"] = 1024;
         c["head_dim"] = 64;
       }, "self_attn"},
  };
  for (const Row& r : rows) {
    DYNAMIC_SECTION(r.name) {
      run_bounded(std::string("config claims ") + r.name, [&] {
        ModelCopy m("llama-draft");
        json c = json::parse(read_text(m.path() / "config.json"));
        r.edit(c);
        write_file(m.path() / "config.json", c.dump());
        expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); },
                                  {m.path().string(), r.needle});
      });
    }
  }
}

// ===========================================================================
// 6. Error text: names from files cannot forge output lines or escapes; the
//    file or option at fault is named.

TEST_CASE("hostile: names with newlines and ANSI escapes are escaped", "[hostile][messages]") {
  SECTION("a tensor name with a newline and an escape") {
    run_bounded("tensor name with control characters", [] {
      TempDir d;
      const fs::path p = d.path / "model.safetensors";
      const std::string header =
          "{\"w\\nerror: forged line\\u001b[31m\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}";
      write_file(p, le64(header.size()) + header + std::string(8, '\0'));
      expect_error<FormatError>([&] { io::SafetensorsFile f(p); },
                                {"w\\nerror: forged line\\x1b[31m", "data_offsets"});
    });
  }
  SECTION("an unexpected tensor with a newline in a checkpoint") {
    run_bounded("unexpected tensor name with newline", [] {
      EditedModel m("llama-draft", [](std::vector<io::TensorView>& ts, auto&) {
        io::TensorView extra = ts.front();
        static const std::string name = "evil\n\x1b[2Jname";
        extra.name = name;
        ts.push_back(extra);
      });
      expect_error<FormatError>([&] { cpu::Transformer::load(m.path()); },
                                {"unexpected tensor 'evil\\n\\x1b[2Jname'"});
    });
  }
  SECTION("an architecture name with a carriage return") {
    run_bounded("architecture with CR", [] {
      json c = base_config();
      c["architectures"] = {"Llama\rForCausalLM\x07"};
      expect_error<UnsupportedError>([&] { ModelConfig::parse(c.dump(), "hostile/config.json"); },
                                     {"hostile/config.json", "Llama\\rForCausalLM\\x07"});
    });
  }
  SECTION("a schedule name with a newline in generation_config.json") {
    run_bounded("schedule with newline", [] {
      const std::string text = R"({"num_assistant_tokens_schedule":"fast\nERROR"})";
      expect_error<UnsupportedError>(
          [&] { GenerateOptions::parse_generation_config(text, "hostile/generation_config.json"); },
          {"hostile/generation_config.json", "fast\\nERROR"});
    });
  }
  SECTION("a tokenizer unk_token with an escape") {
    run_bounded("unk_token with escape", [] {
      json j = tiny_tokenizer();
      j["model"]["unk_token"] = "\x1b]0;title\x07";
      expect_error<FormatError>([&] { tokenizer_from(j); },
                                {"model.unk_token", "\\x1b]0;title\\x07"});
    });
  }
  SECTION("a huge array in a typed field is cut in the message") {
    run_bounded("huge array value", [] {
      json c = base_config();
      c["hidden_size"] = json::array();
      for (int i = 0; i < 100000; ++i) c["hidden_size"].push_back(i);
      try {
        ModelConfig::parse(c.dump(), "hostile/config.json");
        FAIL("no exception");
      } catch (const ConfigError& e) {
        CHECK_THAT(e.what(), Catch::Contains("hidden_size"));
        CHECK(std::string(e.what()).size() < 400);
      }
    });
  }
}

TEST_CASE("hostile: generation_config.json and tokenizer ids checked against the model",
          "[hostile][messages]") {
  auto model_dir = [](TempDir& d, const std::string& gen, const json& tok) {
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(kModels / "llama-draft" / f, d.path / f);
    write_file(d.path / "tokenizer.json", tok.dump());
    if (!gen.empty()) write_file(d.path / "generation_config.json", gen);
  };
  struct Row {
    const char* name;
    std::string gen;
    const char* needle;
    bool tokenizer_rejects;  // the tokenizer's own check (ids it does not have) comes first
  };
  const Row rows[] = {
      {"eos id past the vocabulary", R"({"eos_token_id": 300})", "eos_token_id", true},
      {"one eos id of a list past the vocabulary", R"({"eos_token_id": [1, 2, 256]})",
       "eos_token_id", true},
      {"bos id past the vocabulary", R"({"bos_token_id": 1000})", "bos_token_id", true},
      {"suppress id past the vocabulary", R"({"suppress_tokens": [5, 70000]})", "suppress_tokens",
       false},
      {"suppress id negative", R"({"suppress_tokens": [-1]})", "suppress_tokens", false},
  };
  for (const Row& r : rows) {
    DYNAMIC_SECTION(r.name) {
      run_bounded(std::string("generation_config ") + r.name, [&] {
        TempDir d;
        model_dir(d, r.gen, tiny_tokenizer());
        if (r.tokenizer_rejects)
          expect_error<FormatError>([&] { (void)load_model(d.path); },
                                    {"generation_config.json", r.needle, "not in the vocabulary"});
        else
          expect_error<ConfigError>([&] { (void)load_model(d.path); },
                                    {"generation_config.json", r.needle});
      });
    }
  }
  SECTION("a tokenizer larger than the model's vocabulary") {
    run_bounded("tokenizer vocab above config vocab", [&] {
      TempDir d;
      json tok = tiny_tokenizer();
      tok["added_tokens"][0]["id"] = 400;
      model_dir(d, "", tok);
      expect_error<ConfigError>([&] { (void)load_model(d.path); },
                                {"tokenizer.json", "config.json", "vocab_size 256"});
    });
  }
  SECTION("a consistent directory loads and generates") {
    run_bounded("consistent model directory", [&] {
      TempDir d;
      model_dir(d, R"({"eos_token_id": 3, "max_new_tokens": 4})", tiny_tokenizer());
      const Model m = load_model(d.path);
      const TextResult r = m.generate("ab", GenerateOptions{});
      CHECK(r.tokens.size() <= 4);
    });
  }
}

// ===========================================================================
// 7. Sizes driven by the prompt: the text API refuses a prompt past the
//    model's positions before any prefill (no quadratic attention, no logits
//    row per prompt token).

TEST_CASE("hostile: prompts longer than max_position_embeddings", "[hostile][sizes]") {
  auto model_dir = [](TempDir& d) {
    for (const char* f : {"config.json", "model.safetensors"})
      fs::copy_file(kModels / "llama-draft" / f, d.path / f);  // max_position_embeddings 128
    write_file(d.path / "tokenizer.json", tiny_tokenizer().dump());
  };
  for (const std::size_t reps : {129u, 5000u, 1000000u}) {
    const std::string row = "prompt of " + std::to_string(reps) + " tokens";
    DYNAMIC_SECTION(row) {
      run_bounded(row, [&] {
        TempDir d;
        model_dir(d);
        const Model m = load_model(d.path);
        std::string prompt;
        for (std::size_t i = 0; i < reps; ++i) prompt += "ab";
        expect_error<CapacityError>([&] { (void)m.generate(prompt, {.max_new_tokens = 2}); },
                                    {std::to_string(reps) + " tokens", "max_position_embeddings (128"});
        expect_error<CapacityError>([&] { (void)m.generate(prompt, m, {.max_new_tokens = 2}); },
                                    {"max_position_embeddings (128"});
      });
    }
  }
  SECTION("a prompt at the limit runs") {
    run_bounded("prompt of 120 tokens", [&] {
      TempDir d;
      model_dir(d);
      const Model m = load_model(d.path);
      std::string prompt;
      for (int i = 0; i < 120; ++i) prompt += "ab";
      const TextResult r = m.generate(prompt, {.max_new_tokens = 4});
      CHECK(r.prompt_tokens.size() == 120);
      CHECK(r.tokens.size() <= 4);
    });
  }
}

// ===========================================================================
// 8. Wide rather than deep: a JSON document of millions of values stays
//    bounded in memory (at most 2^22 values per document).

TEST_CASE("hostile: JSON documents of millions of values", "[hostile][depth][memory]") {
  auto zeros = [](std::size_t n) {
    std::string s = "[";
    s.reserve(2 * n + 2);
    for (std::size_t i = 0; i < n; ++i) s += i ? ",0" : "0";
    return s + "]";
  };
  SECTION("a safetensors header holding 5 million numbers") {
    run_bounded("safetensors header of 5M values", [&] {
      TempDir d;
      const fs::path p = d.path / "model.safetensors";
      const std::string header = R"({"__metadata__":{},"w":{"dtype":"F32","shape":)" + zeros(5'000'000) +
                                 R"(,"data_offsets":[0,0]}})";
      write_file(p, le64(header.size()) + header);
      expect_error<FormatError>([&] { io::SafetensorsFile f(p); },
                                {p.string(), "more than 4194304 JSON values"});
    });
  }
  SECTION("a config.json holding 5 million numbers") {
    run_bounded("config.json of 5M values", [&] {
      std::string text = base_config().dump();
      text.insert(text.size() - 1, ",\"extra\":" + zeros(5'000'000));
      expect_error<ConfigError>([&] { ModelConfig::parse(text, "hostile/config.json"); },
                                {"hostile/config.json", "more than 4194304 JSON values"});
    });
  }
  SECTION("a tokenizer_config.json holding 5 million strings") {
    run_bounded("tokenizer_config of 5M strings", [&] {
      std::string cfg = "{\"x\":[";
      for (int i = 0; i < 5'000'000; ++i) cfg += i ? ",\"\"" : "\"\"";
      cfg += "]}";
      expect_error<FormatError>([&] { tokenizer_from(tiny_tokenizer(), cfg); },
                                {"tokenizer_config.json", "more than 4194304 JSON values"});
    });
  }
}
