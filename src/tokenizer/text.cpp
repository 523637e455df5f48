// UTF-8 helpers, the byte-level table and the PCRE2 wrapper of the tokenizer.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <assistgen/error.hpp>

#include "tokenizer_internal.hpp"

namespace assistgen::tok {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 with `bad` = length of
// the maximal invalid subpart (at least 1) when it is not valid.
std::size_t valid_seq_len(std::string_view s, std::size_t i, std::size_t& bad) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  bad = 1;
  if (b0 < 0x80) return 1;
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
    bad = k + 1;
  }
  return need + 1;
}

}  // namespace

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t bad = 0;
    const std::size_t n = valid_seq_len(s, i, bad);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      // `bad` counted the lead plus the continuation bytes that were still
      // acceptable: that is the maximal subpart, replaced by one U+FFFD.
      out.append("\xEF\xBF\xBD");
      i += bad;
    }
  }
  return out;
}

std::size_t incomplete_utf8_tail(std::string_view s) {
  const std::size_t n = s.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    const std::size_t p = n - back;
    const auto b = static_cast<unsigned char>(s[p]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: look further back
    if (b < 0xC2 || b > 0xF4) return 0;
    std::size_t need = b <= 0xDF ? 2 : b <= 0xEF ? 3 : 4;
    if (back >= need) return 0;  // complete (or invalid) already
    // Is s[p..n) a valid prefix? Check the second byte's range.
    if (back >= 2) {
      const auto b1 = static_cast<unsigned char>(s[p + 1]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
      if (b1 < lo || b1 > hi) return 0;
    }
    return back;
  }
  return 0;
}

char32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  const std::size_t n = utf8_len(b0);
  char32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (std::size_t k = 1; k < n && i + k < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_unicode_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

const ByteLevelTable& ByteLevelTable::get() {
  static const ByteLevelTable table = [] {
    ByteLevelTable t;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(next++);
      append_utf8(t.byte_to_utf8[b], cp);
      t.cp_to_byte[cp] = static_cast<unsigned char>(b);
    }
    return t;
  }();
  return table;
}

// ---- Regex ----------------------------------------------------------------------

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view pattern, const std::string& where) : where_(where) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw FormatError(where + ": regex '" + std::string(pattern) + "' does not compile at offset " +
                      std::to_string(err_off) + ": " + reinterpret_cast<const char*>(msg));
  }
  auto c = std::make_shared<Code>();
  c->code = code;
  c->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = std::move(c);
}

Regex Regex::literal(std::string_view text, const std::string& where) {
  std::string p = "\\Q";
  // \Q...\E cannot contain "\E"; split it out when present.
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == 'E') {
      p += "\\E\\\\\\QE";
      ++i;
    } else {
      p += text[i];
    }
  }
  p += "\\E";
  return Regex(p, where);
}

namespace {

// PCRE2's JIT stack defaults to 32 KiB, too little for long pre-tokens; one
// larger stack per thread keeps matching re-entrant without a lock.
struct ThreadMatchContext {
  pcre2_match_context* ctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  ThreadMatchContext() {
    ctx = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
    if (ctx != nullptr && stack != nullptr) pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  ~ThreadMatchContext() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
  }
};

struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {}
  ~MatchData() { pcre2_match_data_free(md); }
};

}  // namespace

// Linear-time search. A backtracking search over the whole text can cost
// time quadratic in its length (a pattern like `\w+X` over a long word tries
// every start and scans to the end from each), and PCRE2's match limit is
// counted per start position, so it does not bound that. Each call here sees
// at most kRegexWindowBytes past its start: a match that may run past the
// window's end (PCRE2_PARTIAL_HARD reports it) is searched again from its own
// start with a full window, and one that is still longer than the window is
// taken as the window allows. Text of ordinary pre-tokens is matched exactly
// as a search over the whole text would; the cost is O(text * window).
void Regex::for_each_match(std::string_view text,
                           const std::function<void(std::size_t, std::size_t)>& f) const {
  thread_local ThreadMatchContext tmc;
  MatchData data(code_->code);
  if (data.md == nullptr) throw CapacityError(where_ + ": out of memory creating PCRE2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const std::size_t n = text.size();
  // The end of the window that starts at `from`, on a character boundary.
  auto window_end = [&](std::size_t from) {
    if (n - from <= kRegexWindowBytes) return n;
    std::size_t end = from + kRegexWindowBytes;
    while (end > from && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    return end;
  };
  // One search of [start, end); with `partial`, a match that reaches `end`
  // is reported as PCRE2_ERROR_PARTIAL. Match and heap limits end in a
  // CapacityError naming the pattern's file and field.
  auto run = [&](std::size_t end, std::size_t start, std::uint32_t options, bool partial) {
    if (partial) options |= PCRE2_PARTIAL_HARD;
    const int rc = pcre2_match(code_->code, subject, end, start, options | PCRE2_NO_UTF_CHECK,
                               data.md, tmc.ctx);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && rc != PCRE2_ERROR_PARTIAL) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw CapacityError(where_ + ": regex matching failed at byte " + std::to_string(start) +
                          " (a limit of PCRE2 was reached): " + reinterpret_cast<const char*>(msg));
    }
    return rc;
  };
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
  std::size_t pos = 0;
  std::uint32_t flags = 0;
  // While pos < chunk_end, the text is searched as if it ended at chunk_end:
  // a match there was longer than a window (or looked ahead past it).
  std::size_t chunk_end = 0;
  while (pos <= n) {
    int rc;
    std::size_t end;
    if (pos < chunk_end) {
      end = chunk_end;
      rc = run(end, pos, flags, false);
    } else {
      end = window_end(pos);
      rc = run(end, pos, flags, end < n);
      if (rc == PCRE2_ERROR_PARTIAL) {
        // A match may start at `s` and run past the window; nothing starts
        // before it. Search from there with a whole window; still partial,
        // it is longer than a window: search [s, end) as a chunk.
        const std::size_t s = std::max<std::size_t>(pos, ov[0]);
        const std::uint32_t f2 = s == pos ? flags : 0;
        end = window_end(s);
        rc = run(end, s, f2, end < n);
        if (rc == PCRE2_ERROR_PARTIAL) {
          pos = s;
          flags = f2;
          chunk_end = end;
          continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH && f2 == 0) {
          // Nothing starts in [s, end), even with more text after it.
          if (end >= n) break;
          pos = end;
          flags = 0;
          continue;
        }
      }
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (flags != 0) {
        // An empty match was found at pos: advance one character and go on.
        flags = 0;
        if (pos >= n) break;
        pos += utf8_len(static_cast<unsigned char>(text[pos]));
        continue;
      }
      // No match starts in [pos, end) (with more text after it, if any).
      if (end >= n) break;
      pos = end;
      continue;
    }
    const std::size_t ms = ov[0], me = ov[1];
    f(ms, me);
    pos = me;
    flags = ms == me ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
  }
}

}  // namespace assistgen::tok
