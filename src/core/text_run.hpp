// Private to the text API (generate.cpp, generate_batch.cpp): what a text
// generation does around the token decoders, shared by Model::generate and
// Model::generate_batch so that a prompt gives the same text either way:
// the prompt's preparation (BOS fallback, length check, the resolved
// GenerationConfig with the tokenizer's masked ids), and TextStream, the
// streaming detokenizer with stop strings that rides on the token callback.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/tokenizer.hpp"

namespace assistgen::detail {

inline constexpr std::size_t kMaxStopStrings = 64;
inline constexpr std::size_t kMaxStopStringBytes = 1024;

inline void check_stop_strings(const std::vector<std::string>& stops) {
  if (stops.size() > kMaxStopStrings)
    throw InvalidArgument("GenerateOptions: stop: " + std::to_string(stops.size()) +
                          " stop strings, more than " + std::to_string(kMaxStopStrings));
  for (std::size_t i = 0; i < stops.size(); ++i) {
    if (stops[i].empty())
      throw InvalidArgument("GenerateOptions: stop: stop string " + std::to_string(i) +
                            " is empty (it would stop before any text)");
    if (stops[i].size() > kMaxStopStringBytes)
      throw InvalidArgument("GenerateOptions: stop: stop string " + std::to_string(i) + " has " +
                            std::to_string(stops[i].size()) + " bytes, more than " +
                            std::to_string(kMaxStopStringBytes));
  }
}

// Finds stop strings in streamed text. Every stop string has a KMP automaton
// fed byte by byte, so the first byte at which the text ends with a stop
// string is found in time linear in the text, whatever the token boundaries;
// each automaton's state is the longest tail of the text that could still
// become its stop string, which is held back from streaming.
class StopMatcher {
 public:
  explicit StopMatcher(const std::vector<std::string>& stops) {
    for (const std::string& s : stops) {
      Automaton a{s, std::vector<std::size_t>(s.size(), 0), 0};
      for (std::size_t i = 1, k = 0; i < s.size(); ++i) {  // KMP prefix function
        while (k > 0 && s[i] != s[k]) k = a.fail[k - 1];
        if (s[i] == s[k]) ++k;
        a.fail[i] = k;
      }
      stops_.push_back(std::move(a));
    }
  }
  bool active() const { return !stops_.empty(); }
  bool hit() const { return hit_; }
  const std::string& text() const { return text_; }

  // Appends `piece` and returns the text that can now be streamed: all of
  // it but a tail that may begin a stop string, or, once a stop string is
  // complete, everything before it (and then nothing ever again).
  std::string_view push(std::string_view piece) {
    if (hit_) return {};
    for (const char c : piece) {
      text_ += c;
      std::size_t cut = std::string::npos;  // the longest stop string ending here wins
      for (Automaton& a : stops_) {
        std::size_t k = a.state;
        while (k > 0 && a.s[k] != c) k = a.fail[k - 1];
        if (a.s[k] == c) ++k;
        if (k == a.s.size()) {
          cut = std::min(cut, text_.size() - k);
          k = a.fail[k - 1];
        }
        a.state = k;
      }
      if (cut != std::string::npos) {
        hit_ = true;
        text_.resize(cut);
        return take(cut);
      }
    }
    std::size_t held = 0;
    for (const Automaton& a : stops_) held = std::max(held, a.state);
    return take(text_.size() - held);
  }
  // The held-back tail, at the end of a generation that met no stop string.
  std::string_view flush() { return hit_ ? std::string_view() : take(text_.size()); }

 private:
  struct Automaton {
    std::string s;
    std::vector<std::size_t> fail;
    std::size_t state;
  };
  std::string_view take(std::size_t upto) {
    upto = std::max(upto, sent_);
    const std::string_view out(text_.data() + sent_, upto - sent_);
    sent_ = upto;
    return out;
  }
  std::vector<Automaton> stops_;
  std::string text_;
  std::size_t sent_ = 0;
  bool hit_ = false;
};

/// A prompt ready for the decoders, with everything generate() derives
/// from the options.
struct PreparedRun {
  std::vector<Token> prompt;       ///< never empty (the BOS fallback)
  GenerationConfig cfg;            ///< resolved, the masked ids suppressed
  bool skip_special = true;        ///< of the text
  std::vector<std::string> stops;  ///< checked stop strings
  /// Self-speculation's exit layer (assistant_early_exit; 0: none).
  std::size_t early_exit = 0;
};

/// Prepares `prompt` (ids) for `target`, assisted by `assistant` (may be
/// null): InvalidArgument / CapacityError as generate() throws them (early
/// exit with an assistant or with prompt lookup included).
/// Defined in generate.cpp.
PreparedRun prepare_run(const Model& target, std::vector<Token> prompt, const Model* assistant,
                        const GenerateOptions& options);

/// The text side of one generation: each accepted token goes through the
/// detokenizer, and a callback returning false (the caller's, or a
/// completed stop string) stops decoding after that token, cutting the
/// caches as an EOS does. Not movable once token_callback() was taken.
class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, bool skip_special, const std::vector<std::string>& stops,
             TextCallback on_text)
      : tokenizer_(&tokenizer),
        skip_special_(skip_special),
        detok_(tokenizer.streaming(skip_special)),
        matcher_(stops),
        on_text_(std::move(on_text)) {}
  TextStream(const TextStream&) = delete;
  TextStream& operator=(const TextStream&) = delete;

  /// The decoders' token callback; empty when nobody listens (no on_text,
  /// no stop strings).
  TokenCallback token_callback() {
    if (!on_text_ && !matcher_.active()) return {};
    return [this](Token t) { return push(t); };
  }
  /// Takes one accepted token; false: generation stops after it.
  bool push(Token t) {
    const std::string piece = detok_.push(t);
    if (!piece.empty()) deliver(matcher_.active() ? matcher_.push(piece) : std::string_view(piece));
    return !refused_ && !matcher_.hit();
  }
  /// Streams what is held back and fills `out` from the decoder's result.
  void finish(GenerationResult r, TextResult& out) {
    if (!matcher_.hit()) {
      // The detokenizer's held-back end may still complete a stop string.
      const std::string rest = detok_.finish();
      if (matcher_.active()) {
        deliver(matcher_.push(rest));
        deliver(matcher_.flush());
      } else {
        deliver(rest);
      }
    }
    out.tokens = std::move(r.tokens);
    out.stats = r.stats;
    out.stop_reason = r.stop_reason;
    if (matcher_.hit() &&
        (out.stop_reason == StopReason::callback || out.stop_reason == StopReason::max_new_tokens ||
         out.stop_reason == StopReason::capacity))
      out.stop_reason = StopReason::stop_string;
    out.text = matcher_.active() ? matcher_.text() : tokenizer_->decode(out.tokens, skip_special_);
  }

 private:
  void deliver(std::string_view text) {
    if (on_text_ && !refused_ && !text.empty()) refused_ = !on_text_(text);
  }
  const Tokenizer* tokenizer_;
  bool skip_special_;
  StreamingDetokenizer detok_;
  StopMatcher matcher_;
  TextCallback on_text_;
  bool refused_ = false;  // on_text returned false
};

}  // namespace assistgen::detail
