// Normalizers, pre-tokenizers and decoders of the tokenizer pipeline, with
// the semantics of the Rust `tokenizers` crate.
#include <utf8proc.h>

#include <algorithm>
#include <assistgen/error.hpp>
#include <cstdlib>

#include "tokenizer_internal.hpp"

namespace assistgen::tok {

[[noreturn]] void throw_growth(std::string_view where, std::size_t input_bytes) {
  throw FormatError(std::string(where) + ": the output would exceed " +
                    std::to_string(growth_limit(input_bytes)) + " bytes (" +
                    std::to_string(kMaxGrowthFactor) + " x the " + std::to_string(input_bytes) +
                    "-byte input + " + std::to_string(kGrowthSlack) +
                    "): a normalizer or decoder may not multiply the text");
}

namespace {

// Replaces every match of `re` in `text` by `content`. The result may be at
// most growth_limit(text.size()) bytes: a pattern that matches everywhere (an
// empty one) with a long content would otherwise multiply the text.
void replace_all(std::string& text, const Regex& re, std::string_view content) {
  std::string out;
  std::size_t prev = 0;
  bool any = false;
  const std::size_t limit = growth_limit(text.size());
  re.for_each_match(text, [&](std::size_t s, std::size_t e) {
    any = true;
    out.append(text, prev, s - prev);
    out.append(content);
    prev = e;
    if (out.size() > limit) throw_growth(re.where(), text.size());
  });
  if (!any) return;
  out.append(text, prev, std::string::npos);
  text = std::move(out);
}

// ---- normalizers ----------------------------------------------------------------

class Nfx final : public Normalizer {
 public:
  Nfx(int options, std::string where) : options_(options), where_(std::move(where)) {}
  void apply(std::string& text) const override {
    if (text.empty()) return;
    utf8proc_uint8_t* out = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                static_cast<utf8proc_ssize_t>(text.size()), &out,
                                static_cast<utf8proc_option_t>(options_));
    if (n < 0) {
      // The input is valid UTF-8 by construction; only memory can fail here.
      throw CapacityError(where_ + ": utf8proc failed: " + utf8proc_errmsg(n));
    }
    text.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
    std::free(out);
  }

 private:
  int options_;
  std::string where_;
};

class Lowercase final : public Normalizer {
 public:
  void apply(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
      const auto b = static_cast<unsigned char>(text[i]);
      if (b < 0x80) {
        out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
        ++i;
        continue;
      }
      append_utf8(out, static_cast<char32_t>(utf8proc_tolower(
                           static_cast<utf8proc_int32_t>(next_code_point(text, i)))));
    }
    text = std::move(out);
  }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(Regex re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::string& text) const override { replace_all(text, re_, content_); }

 private:
  Regex re_;
  std::string content_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& text) const override {
    std::size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        std::size_t j = begin;
        if (!is_unicode_whitespace(next_code_point(text, j))) break;
        begin = j;
      }
    }
    if (right_) {
      while (end > begin) {
        std::size_t k = end - 1;
        while (k > begin && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
        std::size_t j = k;
        if (!is_unicode_whitespace(next_code_point(text, j))) break;
        end = k;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class NormalizerSequence final : public Normalizer {
 public:
  explicit NormalizerSequence(std::vector<std::unique_ptr<Normalizer>> items)
      : items_(std::move(items)) {}
  // Each member is bounded against its own input; the chain as a whole
  // against the chain's input, so chained Replaces cannot multiply the text.
  void apply(std::string& text) const override {
    const std::size_t in = text.size(), limit = growth_limit(in);
    for (const auto& n : items_) {
      n->apply(text);
      if (text.size() > limit) throw_growth("normalizer Sequence", in);
    }
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

// ---- pre-tokenizers -------------------------------------------------------------

// The GPT-2 pattern the ByteLevel pre-tokenizer uses when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre final : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space),
        regex_(use_regex ? std::make_optional<Regex>(kGpt2Pattern, "pre_tokenizer ByteLevel")
                         : std::nullopt) {}
  void apply(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& p : pieces)
        if (!p.text.empty() && p.text[0] != ' ') p.text = " " + p.text;
    }
    if (regex_) split_pieces(pieces, *regex_, SplitBehavior::isolated, false);
    const auto& table = ByteLevelTable::get();
    for (auto& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (const char c : p.text) mapped += table.byte_to_utf8[static_cast<unsigned char>(c)];
      p.text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class SplitPre final : public PreTokenizer {
 public:
  SplitPre(Regex re, SplitBehavior b, bool invert)
      : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void apply(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, re_, behavior_, invert_);
  }

 private:
  Regex re_;
  SplitBehavior behavior_;
  bool invert_;
};

class MetaspacePre final : public PreTokenizer {
 public:
  MetaspacePre(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(split),
        space_(Regex::literal(" ", "pre_tokenizer Metaspace")),
        rep_re_(Regex::literal(replacement_, "pre_tokenizer Metaspace.replacement")) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (auto& p : pieces) {
      replace_all(p.text, space_, replacement_);
      const bool starts = p.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::always || (scheme_ == PrependScheme::first && p.at_start)))
        p.text.insert(0, replacement_);
    }
    if (split_) split_pieces(pieces, rep_re_, SplitBehavior::merged_with_next, false);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  Regex space_, rep_re_;
};

class PreSequence final : public PreTokenizer {
 public:
  explicit PreSequence(std::vector<std::unique_ptr<PreTokenizer>> items)
      : items_(std::move(items)) {}
  void apply(std::vector<Piece>& pieces) const override {
    for (const auto& p : items_) p->apply(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

// ---- decoders -------------------------------------------------------------------

class ByteLevelDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    const auto& table = ByteLevelTable::get();
    std::string out;
    std::string bytes;
    for (const auto& t : tokens) {
      bytes.clear();
      bool all = true;
      for (std::size_t i = 0; i < t.size();) {
        const char32_t cp = next_code_point(t, i);
        auto it = table.cp_to_byte.find(cp);
        if (it == table.cp_to_byte.end()) {
          all = false;
          break;
        }
        bytes.push_back(static_cast<char>(it->second));
      }
      // A token outside the byte alphabet (an added token such as "<|im_start|>"
      // with non-ASCII text) is kept as it is, like the Rust decoder does.
      out += all ? bytes : t;
    }
    tokens.assign(1, std::move(out));
  }

 protected:
  bool joins_tokens() const override { return true; }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, PrependScheme scheme)
      : scheme_(scheme), re_(Regex::literal(replacement, "decoder Metaspace.replacement")) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      replace_all(tokens[i], re_, " ");
      if (i == 0 && scheme_ != PrependScheme::never && !tokens[i].empty() && tokens[i][0] == ' ')
        tokens[i].erase(0, 1);
    }
  }

 private:
  PrependScheme scheme_;
  Regex re_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Regex re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      // Raw byte-fallback bytes may not be UTF-8 yet; PCRE2 (UTF mode,
      // no check) must only see valid text.
      if (sanitize_utf8(t) != t) continue;
      replace_all(t, re_, content_);
    }
  }

 private:
  Regex re_;
  std::string content_;
};

bool parse_byte_token(const std::string& t, unsigned char& byte) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return false;
  byte = static_cast<unsigned char>(hi * 16 + lo);
  return true;
}

class ByteFallbackDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    bool in_bytes = false;
    for (auto& t : tokens) {
      unsigned char b = 0;
      if (parse_byte_token(t, b)) {
        // Raw bytes; the final UTF-8 repair turns invalid runs into U+FFFD.
        if (!in_bytes) out.emplace_back();
        out.back().push_back(static_cast<char>(b));
        in_bytes = true;
      } else {
        out.push_back(std::move(t));
        in_bytes = false;
      }
    }
    tokens = std::move(out);
  }

 protected:
  bool joins_tokens() const override { return true; }
};

class FuseDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }

 protected:
  bool joins_tokens() const override { return true; }
  bool safe_after_join() const override { return true; }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (auto& t : tokens) {
      std::size_t b = 0, e = t.size();
      for (std::size_t k = 0;
           k < start_ && e - b >= content_.size() && t.compare(b, content_.size(), content_) == 0;
           ++k)
        b += content_.size();
      for (std::size_t k = 0; k < stop_ && e - b >= content_.size() &&
                              t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 protected:
  // On joined text a Strip of one ASCII byte at the start (Llama's
  // Sequence[..., ByteFallback, Fuse, Strip(" ", 1, 0)]) is seen the same way
  // by the two-token window; more than one, or any at the end, depends on how
  // many tokens of spaces came before.
  bool safe_after_join() const override {
    return content_.empty() ||
           (content_.size() == 1 && static_cast<unsigned char>(content_[0]) < 0x80 &&
            start_ <= 1 && stop_ == 0);
  }

 private:
  std::string content_;
  std::size_t start_, stop_;
};

class BpeDecoder final : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void apply(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      const std::string rep = i + 1 == tokens.size() ? "" : " ";
      std::string out;
      std::size_t prev = 0, pos;
      while ((pos = t.find(suffix_, prev)) != std::string::npos) {
        out.append(t, prev, pos - prev);
        out += rep;
        prev = pos + suffix_.size();
      }
      out.append(t, prev, std::string::npos);
      t = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

class DecoderSequence final : public Decoder {
 public:
  explicit DecoderSequence(std::vector<std::unique_ptr<Decoder>> items)
      : items_(std::move(items)) {}
  void apply(std::vector<std::string>& tokens) const override {
    auto total = [&tokens] {
      std::size_t n = 0;
      for (const auto& t : tokens) n += t.size();
      return n;
    };
    const std::size_t in = total(), limit = growth_limit(in);
    for (const auto& d : items_) {
      d->apply(tokens);
      if (total() > limit) throw_growth("decoder Sequence", in);
    }
  }
  void stream_check(bool& joined, bool& local) const override {
    for (const auto& d : items_) d->stream_check(joined, local);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

}  // namespace

void split_pieces(std::vector<Piece>& pieces, const Regex& re, SplitBehavior behavior,
                  bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  struct Seg {
    std::size_t begin, end;
    bool is_match;
  };
  std::vector<Seg> segs, merged;
  for (auto& piece : pieces) {
    const std::string& s = piece.text;
    segs.clear();
    std::size_t prev = 0;
    re.for_each_match(s, [&](std::size_t b, std::size_t e) {
      if (prev != b) segs.push_back({prev, b, false});
      segs.push_back({b, e, true});
      prev = e;
    });
    if (prev != s.size()) segs.push_back({prev, s.size(), false});
    if (invert)
      for (auto& g : segs) g.is_match = !g.is_match;

    merged.clear();
    switch (behavior) {
      case SplitBehavior::isolated:
        merged = segs;
        break;
      case SplitBehavior::removed:
        for (const auto& g : segs)
          if (!g.is_match) merged.push_back(g);
        break;
      case SplitBehavior::contiguous: {
        bool prev_match = false;
        for (const auto& g : segs) {
          if (g.is_match == prev_match && !merged.empty())
            merged.back().end = g.end;
          else
            merged.push_back(g);
          prev_match = g.is_match;
        }
        break;
      }
      case SplitBehavior::merged_with_previous: {
        bool prev_match = false;
        for (const auto& g : segs) {
          if (g.is_match && !prev_match && !merged.empty())
            merged.back().end = g.end;
          else
            merged.push_back(g);
          prev_match = g.is_match;
        }
        break;
      }
      case SplitBehavior::merged_with_next: {
        bool next_match = false;
        for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
          if (it->is_match && !next_match && !merged.empty())
            merged.back().begin = it->begin;
          else
            merged.push_back(*it);
          next_match = it->is_match;
        }
        std::reverse(merged.begin(), merged.end());
        break;
      }
    }
    bool first = true;
    for (const auto& g : merged) {
      if (g.end == g.begin) continue;
      out.push_back({s.substr(g.begin, g.end - g.begin), piece.at_start && first && g.begin == 0});
      first = false;
    }
  }
  pieces = std::move(out);
}

std::unique_ptr<Normalizer> make_nfx(int form, const std::string& where) {
  static constexpr int kOptions[4] = {UTF8PROC_STABLE | UTF8PROC_COMPOSE,
                                      UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                                      UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
  return std::make_unique<Nfx>(kOptions[form], where);
}
std::unique_ptr<Normalizer> make_lowercase() { return std::make_unique<Lowercase>(); }
std::unique_ptr<Normalizer> make_prepend(std::string prefix) {
  return std::make_unique<Prepend>(std::move(prefix));
}
std::unique_ptr<Normalizer> make_replace_normalizer(Regex pattern, std::string content) {
  return std::make_unique<ReplaceNormalizer>(std::move(pattern), std::move(content));
}
std::unique_ptr<Normalizer> make_strip_normalizer(bool left, bool right) {
  return std::make_unique<StripNormalizer>(left, right);
}
std::unique_ptr<Normalizer> make_normalizer_sequence(
    std::vector<std::unique_ptr<Normalizer>> items) {
  return std::make_unique<NormalizerSequence>(std::move(items));
}

std::unique_ptr<PreTokenizer> make_byte_level_pre(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevelPre>(add_prefix_space, use_regex);
}
std::unique_ptr<PreTokenizer> make_split(Regex pattern, SplitBehavior behavior, bool invert) {
  return std::make_unique<SplitPre>(std::move(pattern), behavior, invert);
}
std::unique_ptr<PreTokenizer> make_metaspace_pre(std::string replacement, PrependScheme scheme,
                                                 bool split) {
  return std::make_unique<MetaspacePre>(std::move(replacement), scheme, split);
}
std::unique_ptr<PreTokenizer> make_digits(bool individual) {
  // Rust's char::is_numeric is the N categories (Nd, Nl, No).
  return std::make_unique<SplitPre>(
      Regex(R"(\p{N})", "pre_tokenizer Digits"),
      individual ? SplitBehavior::isolated : SplitBehavior::contiguous, false);
}
std::unique_ptr<PreTokenizer> make_pre_sequence(std::vector<std::unique_ptr<PreTokenizer>> items) {
  return std::make_unique<PreSequence>(std::move(items));
}

std::unique_ptr<Decoder> make_byte_level_decoder() { return std::make_unique<ByteLevelDecoder>(); }
std::unique_ptr<Decoder> make_metaspace_decoder(std::string replacement, PrependScheme scheme) {
  return std::make_unique<MetaspaceDecoder>(std::move(replacement), scheme);
}
std::unique_ptr<Decoder> make_replace_decoder(Regex pattern, std::string content) {
  return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
}
std::unique_ptr<Decoder> make_byte_fallback_decoder() {
  return std::make_unique<ByteFallbackDecoder>();
}
std::unique_ptr<Decoder> make_fuse_decoder() { return std::make_unique<FuseDecoder>(); }
std::unique_ptr<Decoder> make_strip_decoder(std::string content, std::size_t start,
                                            std::size_t stop) {
  return std::make_unique<StripDecoder>(std::move(content), start, stop);
}
std::unique_ptr<Decoder> make_bpe_decoder(std::string suffix) {
  return std::make_unique<BpeDecoder>(std::move(suffix));
}
std::unique_ptr<Decoder> make_decoder_sequence(std::vector<std::unique_ptr<Decoder>> items) {
  return std::make_unique<DecoderSequence>(std::move(items));
}

}  // namespace assistgen::tok
