// Template text -> syntax tree. The preprocessing (trim_blocks, lstrip_blocks,
// the transformers-specific {% generation %} tag), the tokens and the grammar
// (precedence included) follow @huggingface/jinja's lexer.ts and parser.ts, so
// that every template renders as it does there; each token keeps its offset in
// the original text so that errors name a line and column.
#include <algorithm>

#include "internal.hpp"

namespace assistgen::jinja {
namespace detail {

std::pair<std::size_t, std::size_t> Program::line_col(std::size_t offset) const {
  auto it = std::upper_bound(line_starts.begin(), line_starts.end(), offset);
  const std::size_t line = static_cast<std::size_t>(it - line_starts.begin());
  const std::size_t start = line_starts[line - 1];
  return {line, offset - start + 1};
}

namespace {

// Text with, for each byte, its offset in the original source.
struct Mapped {
  std::string s;
  std::vector<std::size_t> at;  // at.size() == s.size() + 1 (the end maps too)
};

bool is_line_terminator(std::string_view s, std::size_t i, std::size_t* len) {
  if (s[i] == '\n' || s[i] == '\r') {
    *len = 1;
    return true;
  }
  // U+2028 / U+2029 (E2 80 A8 / E2 80 A9) end lines for JavaScript's /^/m.
  if (i + 2 < s.size() && static_cast<unsigned char>(s[i]) == 0xE2 &&
      static_cast<unsigned char>(s[i + 1]) == 0x80 &&
      (static_cast<unsigned char>(s[i + 2]) == 0xA8 ||
       static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
    *len = 3;
    return true;
  }
  return false;
}

Mapped preprocess(std::string_view src, const ParseOptions& opt) {
  Mapped m;
  m.s.assign(src);
  m.at.resize(src.size() + 1);
  for (std::size_t i = 0; i <= src.size(); ++i) m.at[i] = i;
  // A single trailing newline is dropped.
  if (!m.s.empty() && m.s.back() == '\n') {
    m.s.pop_back();
    m.at.erase(m.at.end() - 2);
  }
  auto rebuild = [&](const std::vector<bool>& drop) {
    Mapped r;
    r.s.reserve(m.s.size());
    r.at.reserve(m.s.size() + 1);
    for (std::size_t i = 0; i < m.s.size(); ++i)
      if (!drop[i]) {
        r.s.push_back(m.s[i]);
        r.at.push_back(m.at[i]);
      }
    r.at.push_back(m.at[m.s.size()]);
    m = std::move(r);
  };
  if (opt.lstrip_blocks) {
    // /^[ \t]*({[#%-])/gm -> "$1"
    std::vector<bool> drop(m.s.size(), false);
    bool any = false;
    std::size_t i = 0;
    while (i <= m.s.size()) {
      // i is a line start
      std::size_t j = i;
      while (j < m.s.size() && (m.s[j] == ' ' || m.s[j] == '\t')) ++j;
      if (j > i && j + 1 < m.s.size() && m.s[j] == '{' &&
          (m.s[j + 1] == '#' || m.s[j + 1] == '%' || m.s[j + 1] == '-')) {
        for (std::size_t k = i; k < j; ++k) drop[k] = true;
        any = true;
      }
      // next line start
      std::size_t k = i, len = 0;
      while (k < m.s.size() && !is_line_terminator(m.s, k, &len)) ++k;
      if (k >= m.s.size()) break;
      i = k + len;
    }
    if (any) rebuild(drop);
  }
  if (opt.trim_blocks) {
    // /([#%-]})\n/g -> "$1"
    std::vector<bool> drop(m.s.size(), false);
    bool any = false;
    for (std::size_t i = 0; i + 2 < m.s.size();) {
      if ((m.s[i] == '#' || m.s[i] == '%' || m.s[i] == '-') && m.s[i + 1] == '}' &&
          m.s[i + 2] == '\n') {
        drop[i + 2] = true;
        any = true;
        i += 3;
      } else {
        ++i;
      }
    }
    if (any) rebuild(drop);
  }
  // The transformers {% generation %} / {% endgeneration %} tags are removed:
  // /{%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs
  {
    const std::string& s = m.s;
    std::vector<bool> drop(s.size(), false);
    bool any = false;
    std::size_t last = 0;
    auto skip_ws = [&](std::size_t k) {
      while (k < s.size()) {
        std::size_t t = k;
        if (!is_js_space(next_cp(s, t))) break;
        k = t;
      }
      return k;
    };
    for (std::size_t i = s.find("{%"); i != std::string::npos; i = s.find("{%", i + 1)) {
      if (i < last) continue;
      std::size_t k = i + 2;
      const bool lstrip = k < s.size() && s[k] == '-';
      if (lstrip) ++k;
      k = skip_ws(k);
      if (s.compare(k, 3, "end") == 0 && s.compare(k + 3, 10, "generation") == 0) k += 3;
      if (s.compare(k, 10, "generation") != 0) continue;
      k = skip_ws(k + 10);
      bool rstrip = false;
      if (k < s.size() && s[k] == '-') {
        rstrip = true;
        ++k;
      }
      if (s.compare(k, 2, "%}") != 0) continue;
      k += 2;
      const std::size_t after = skip_ws(k);
      std::size_t end_keep = i;
      if (lstrip) {
        while (end_keep > last) {
          // step back one code point
          std::size_t p = end_keep - 1;
          while (p > last && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
          std::size_t t = p;
          if (!is_js_space(next_cp(s, t))) break;
          end_keep = p;
        }
      }
      for (std::size_t d = end_keep; d < k; ++d) drop[d] = true;
      if (rstrip)
        for (std::size_t d = k; d < after; ++d) drop[d] = true;
      any = true;
      last = after;
      i = after - 1 < i ? i : after - 1;
    }
    if (any) rebuild(drop);
  }
  return m;
}

// ---- tokens --------------------------------------------------------------------

enum class T {
  Text,
  Numeric,
  String,
  Identifier,
  Equals,
  OpenParen,
  CloseParen,
  OpenStatement,
  CloseStatement,
  OpenExpression,
  CloseExpression,
  OpenSquare,
  CloseSquare,
  OpenCurly,
  CloseCurly,
  Comma,
  Dot,
  Colon,
  Pipe,
  Additive,
  Multiplicative,
  Exponent,
  Comparison,
  Unary,
  Comment
};

const char* token_name(T t) {
  static const char* names[] = {"Text",
                                "NumericLiteral",
                                "StringLiteral",
                                "Identifier",
                                "Equals",
                                "OpenParen",
                                "CloseParen",
                                "OpenStatement",
                                "CloseStatement",
                                "OpenExpression",
                                "CloseExpression",
                                "OpenSquareBracket",
                                "CloseSquareBracket",
                                "OpenCurlyBracket",
                                "CloseCurlyBracket",
                                "Comma",
                                "Dot",
                                "Colon",
                                "Pipe",
                                "AdditiveBinaryOperator",
                                "MultiplicativeBinaryOperator",
                                "ExponentiationBinaryOperator",
                                "ComparisonBinaryOperator",
                                "UnaryOperator",
                                "Comment"};
  return names[static_cast<int>(t)];
}

struct Token {
  T type;
  std::string value;
  std::size_t pos;  // offset in the preprocessed text
};

struct SyntaxFailure {
  std::string message;
  std::size_t pos;  // offset in the preprocessed text
};

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::vector<Token> tokenize(const std::string& src) {
  std::vector<Token> tokens;
  const std::size_t n = src.size();
  std::size_t cur = 0;
  int curly_depth = 0;
  auto err = [&](std::string msg, std::size_t at) -> SyntaxFailure { return {std::move(msg), at}; };
  auto space_at = [&](std::size_t i, std::size_t* next) {
    if (i >= n) return false;
    std::size_t t = i;
    const bool r = is_js_space(next_cp(src, t));
    *next = t;
    return r;
  };
  auto consume_ws_strict = [&]() {
    // consumeWhile(isWhitespace): running off the end is an error.
    std::size_t t;
    while (space_at(cur, &t)) {
      cur = t;
      if (cur >= n) throw err("Unexpected end of input", cur);
    }
  };
  auto consume_while = [&](bool (*pred)(char)) {
    const std::size_t start = cur;
    while (cur < n && pred(src[cur])) {
      if (++cur >= n) throw err("Unexpected end of input", cur);
    }
    return src.substr(start, cur - start);
  };
  auto strip_trailing = [&]() {
    if (!tokens.empty() && tokens.back().type == T::Text) {
      std::string& v = tokens.back().value;
      std::size_t end = v.size();
      while (end > 0) {
        std::size_t p = end - 1;
        while (p > 0 && (static_cast<unsigned char>(v[p]) & 0xC0) == 0x80) --p;
        std::size_t t = p;
        if (!is_js_space(next_cp(v, t))) break;
        end = p;
      }
      v.resize(end);
      if (v.empty()) tokens.pop_back();
    }
  };
  auto skip_leading = [&]() {
    std::size_t t;
    while (space_at(cur, &t)) cur = t;
  };

  static const std::pair<const char*, T> kTable[] = {
      {"{%", T::OpenStatement},  {"%}", T::CloseStatement},
      {"{{", T::OpenExpression}, {"}}", T::CloseExpression},
      {"(", T::OpenParen},       {")", T::CloseParen},
      {"{", T::OpenCurly},       {"}", T::CloseCurly},
      {"[", T::OpenSquare},      {"]", T::CloseSquare},
      {",", T::Comma},           {".", T::Dot},
      {":", T::Colon},           {"|", T::Pipe},
      {"<=", T::Comparison},     {">=", T::Comparison},
      {"==", T::Comparison},     {"!=", T::Comparison},
      {"<", T::Comparison},      {">", T::Comparison},
      {"+", T::Additive},        {"-", T::Additive},
      {"~", T::Additive},        {"**", T::Exponent},
      {"*", T::Multiplicative},  {"//", T::Multiplicative},
      {"/", T::Multiplicative},  {"%", T::Multiplicative},
      {"=", T::Equals}};

  while (cur < n) {
    const bool have_last = !tokens.empty();
    const T last = have_last ? tokens.back().type : T::Text;
    if (!have_last || last == T::CloseStatement || last == T::CloseExpression ||
        last == T::Comment) {
      std::size_t end = cur;
      while (true) {
        end = src.find('{', end);
        if (end == std::string::npos) {
          end = n;
          break;
        }
        const char next = end + 1 < n ? src[end + 1] : '\0';
        if (next == '%' || next == '{' || next == '#') break;
        ++end;
      }
      if (end > cur) {
        tokens.push_back({T::Text, src.substr(cur, end - cur), cur});
        cur = end;
        continue;
      }
    }
    if (src[cur] == '{') {
      const char next = cur + 1 < n ? src[cur + 1] : '\0';
      if (next == '#') {
        const std::size_t open = cur;
        cur += 2;
        const bool strip_before = cur < n && src[cur] == '-';
        if (strip_before) ++cur;
        const std::size_t end = src.find("#}", cur);
        if (end == std::string::npos) throw err("Missing end of comment tag", open);
        std::string comment = src.substr(cur, end - cur);
        const bool strip_after = !comment.empty() && comment.back() == '-';
        if (strip_after) comment.pop_back();
        if (strip_before) strip_trailing();
        tokens.push_back({T::Comment, std::move(comment), open});
        cur = end + 2;
        if (strip_after) skip_leading();
        continue;
      }
      if (cur + 2 < n && src[cur + 2] == '-') {
        if (next == '%') {
          strip_trailing();
          tokens.push_back({T::OpenStatement, "{%", cur});
          cur += 3;
          continue;
        }
        if (next == '{') {
          strip_trailing();
          tokens.push_back({T::OpenExpression, "{{", cur});
          curly_depth = 0;
          cur += 3;
          continue;
        }
      }
    }
    consume_ws_strict();
    const char c = src[cur];
    const std::size_t at = cur;
    if (c == '-' && cur + 2 < n && src[cur + 2] == '}') {
      const char next = src[cur + 1];
      if (next == '%') {
        tokens.push_back({T::CloseStatement, "%}", at});
        cur += 3;
        skip_leading();
        continue;
      }
      if (next == '}') {
        tokens.push_back({T::CloseExpression, "}}", at});
        cur += 3;
        skip_leading();
        continue;
      }
    }
    if (c == '-' || c == '+') {
      const T lt = tokens.back().type;  // a Text/none last token cannot reach here
      if (lt == T::Text) throw err(std::string("Unexpected character: ") + c, at);
      if (!(lt == T::Identifier || lt == T::Numeric || lt == T::String || lt == T::CloseParen ||
            lt == T::CloseSquare)) {
        ++cur;
        std::string num = consume_while(is_digit);
        if (!num.empty() && cur + 1 < n && src[cur] == '.' && is_digit(src[cur + 1])) {
          ++cur;
          num += "." + consume_while(is_digit);
        }
        tokens.push_back({num.empty() ? T::Unary : T::Numeric, std::string(1, c) + num, at});
        continue;
      }
    }
    bool matched = false;
    for (const auto& [seq, type] : kTable) {
      if (seq[0] != c) continue;
      if (std::string_view(seq) == "}}" && curly_depth > 0) continue;
      if (src.compare(cur, std::char_traits<char>::length(seq), seq) == 0) {
        tokens.push_back({type, seq, at});
        if (type == T::OpenExpression)
          curly_depth = 0;
        else if (type == T::OpenCurly)
          ++curly_depth;
        else if (type == T::CloseCurly)
          --curly_depth;
        cur += std::char_traits<char>::length(seq);
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (c == '\'' || c == '"') {
      ++cur;
      std::string str;
      while (true) {
        if (cur >= n) throw err("Unexpected end of input (unterminated string)", at);
        const char ch = src[cur];
        if (ch == c) break;
        ++cur;
        if (ch != '\\') {
          str.push_back(ch);
          continue;
        }
        if (cur >= n) throw err("Unexpected end of input", at);
        const char e = src[cur++];
        if (e == 'x' || e == 'u') {
          const std::size_t len = e == 'x' ? 2 : 4;
          const std::string hex = src.substr(cur, len);
          if (hex.size() != len ||
              hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            throw err(std::string("Invalid hexadecimal escape sequence: \\") + e + hex, cur - 2);
          append_utf8(str, static_cast<char32_t>(std::stoul(hex, nullptr, 16)));
          cur += len;
        } else {
          switch (e) {
            case 'n':
              str.push_back('\n');
              break;
            case 't':
              str.push_back('\t');
              break;
            case 'r':
              str.push_back('\r');
              break;
            case 'b':
              str.push_back('\b');
              break;
            case 'f':
              str.push_back('\f');
              break;
            case 'v':
              str.push_back('\v');
              break;
            case '\'':
              str.push_back('\'');
              break;
            case '"':
              str.push_back('"');
              break;
            case '\\':
              str.push_back('\\');
              break;
            default:
              throw err(std::string("Unexpected escaped character: ") + e, cur - 2);
          }
        }
      }
      tokens.push_back({T::String, std::move(str), at});
      ++cur;
      continue;
    }
    if (is_digit(c)) {
      std::string num = consume_while(is_digit);
      if (tokens.empty() || tokens.back().type != T::Dot) {
        if (cur + 1 < n && src[cur] == '.' && is_digit(src[cur + 1])) {
          ++cur;
          num += "." + consume_while(is_digit);
        }
      }
      tokens.push_back({T::Numeric, std::move(num), at});
      continue;
    }
    if (is_word(c)) {
      tokens.push_back({T::Identifier, consume_while(is_word), at});
      continue;
    }
    throw err(std::string("Unexpected character: ") + c, at);
  }
  return tokens;
}

// ---- parser --------------------------------------------------------------------

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::size_t text_end, std::size_t max_depth)
      : t_(std::move(tokens)), end_(text_end), max_depth_(max_depth) {}

  NodeList parse_program() {
    NodeList body;
    while (cur_ < t_.size()) body.push_back(parse_any());
    return body;
  }

 private:
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& pp) : p(pp) {
      if (++p.depth_ > p.max_depth_)
        throw SyntaxFailure{
            "template nested too deeply (more than " + std::to_string(p.max_depth_) + " levels)",
            p.here()};
    }
    ~DepthGuard() { --p.depth_; }
  };

  std::size_t here() const { return cur_ < t_.size() ? t_[cur_].pos : end_; }
  [[noreturn]] void error(std::string msg) const { throw SyntaxFailure{std::move(msg), here()}; }

  const Token& peek() const {
    if (cur_ >= t_.size()) error("Unexpected end of template");
    return t_[cur_];
  }
  const Token& expect(T type, const std::string& what) {
    if (cur_ >= t_.size()) error(what + ", got the end of the template");
    const Token& tok = t_[cur_];
    if (tok.type != type) error(what + ", got " + token_name(tok.type) + " '" + tok.value + "'");
    ++cur_;
    return tok;
  }
  bool is(T type, std::size_t ahead = 0) const {
    return cur_ + ahead < t_.size() && t_[cur_ + ahead].type == type;
  }
  bool is_identifier(std::string_view name, std::size_t ahead = 0) const {
    return is(T::Identifier, ahead) && t_[cur_ + ahead].value == name;
  }
  bool is_statement(std::initializer_list<std::string_view> names) const {
    if (!is(T::OpenStatement) || !is(T::Identifier, 1)) return false;
    for (auto nm : names)
      if (t_[cur_ + 1].value == nm) return true;
    return false;
  }
  void expect_identifier(std::string_view name) {
    if (!is_identifier(name)) error("Expected '" + std::string(name) + "'");
    ++cur_;
  }
  void expect_end(std::string_view name) {
    expect(T::OpenStatement, "Expected '{%'");
    expect_identifier(name);
    expect(T::CloseStatement, "Expected '%}'");
  }
  // Reads statements until one of `names` opens; running out is an error
  // that names the block left open.
  void parse_until(NodeList& body, std::initializer_list<std::string_view> names, const char* block,
                   std::size_t open_pos) {
    while (!is_statement(names)) {
      if (cur_ >= t_.size())
        throw SyntaxFailure{
            std::string("Unclosed '") + block + "' block (expected '{% end" + block + " %}')",
            open_pos};
      body.push_back(parse_any());
    }
  }

  // Chains (a + b + c ..., x.a.b ..., x|f|g ...) grow without recursion in
  // the parser; their height is bounded here, since rendering and freeing
  // them recurses.
  NodePtr grown(NodePtr n) {
    std::size_t h = 0;
    for (const Node* c : {n->x.get(), n->y.get(), n->z.get()})
      if (c) h = std::max(h, c->height);
    for (const auto& c : n->a) h = std::max(h, c->height);
    n->height = h + 1;
    if (n->height > max_depth_)
      throw SyntaxFailure{
          "expression nested too deeply (more than " + std::to_string(max_depth_) + " levels)",
          n->pos};
    return n;
  }

  static NodePtr node(NodeKind k, std::size_t pos) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->pos = pos;
    return n;
  }

  NodePtr parse_any() {
    DepthGuard g(*this);
    const Token& tok = peek();
    switch (tok.type) {
      case T::Comment: {
        auto n = node(NodeKind::Comment, tok.pos);
        ++cur_;
        return n;
      }
      case T::Text: {
        auto n = node(NodeKind::Text, tok.pos);
        n->str = tok.value;
        ++cur_;
        return n;
      }
      case T::OpenStatement:
        return parse_statement();
      case T::OpenExpression: {
        ++cur_;
        auto e = parse_expression();
        expect(T::CloseExpression, "Expected '}}'");
        return e;
      }
      default:
        error(std::string("Unexpected token ") + token_name(tok.type) + " '" + tok.value + "'");
    }
  }

  NodePtr parse_statement() {
    const std::size_t open = peek().pos;
    expect(T::OpenStatement, "Expected '{%'");
    if (!is(T::Identifier)) error("Expected a statement name after '{%'");
    const std::string name = t_[cur_].value;
    NodePtr result;
    if (name == "set") {
      ++cur_;
      result = parse_set(open);
    } else if (name == "if") {
      ++cur_;
      result = parse_if(open);
      expect_end("endif");
    } else if (name == "macro") {
      ++cur_;
      auto n = node(NodeKind::Macro, open);
      auto nm = parse_primary();
      if (nm->kind != NodeKind::Identifier) error("Expected an identifier after 'macro'");
      n->str = nm->str;
      n->a = parse_args(true);
      expect(T::CloseStatement, "Expected '%}'");
      parse_until(n->body, {"endmacro"}, "macro", open);
      expect_end("endmacro");
      analyse_special(*n);
      result = std::move(n);
    } else if (name == "for") {
      ++cur_;
      result = parse_for(open);
      expect_end("endfor");
    } else if (name == "call") {
      ++cur_;
      auto n = node(NodeKind::CallBlock, open);
      if (is(T::OpenParen)) {
        n->flag = true;
        n->a = parse_args(true);
      }
      auto callee = parse_primary();
      if (callee->kind != NodeKind::Identifier) error("Expected an identifier after 'call'");
      auto call = node(NodeKind::Call, callee->pos);
      call->x = std::move(callee);
      call->a = parse_args(false);
      n->x = std::move(call);
      expect(T::CloseStatement, "Expected '%}'");
      parse_until(n->body, {"endcall"}, "call", open);
      expect_end("endcall");
      analyse_special(*n);
      result = std::move(n);
    } else if (name == "break" || name == "continue") {
      ++cur_;
      expect(T::CloseStatement, "Expected '%}'");
      result = node(name == "break" ? NodeKind::Break : NodeKind::Continue, open);
    } else if (name == "filter") {
      ++cur_;
      auto n = node(NodeKind::FilterBlock, open);
      auto f = parse_primary();
      if (f->kind == NodeKind::Identifier && is(T::OpenParen)) f = parse_call(std::move(f));
      n->x = std::move(f);
      expect(T::CloseStatement, "Expected '%}'");
      parse_until(n->body, {"endfilter"}, "filter", open);
      expect_end("endfilter");
      result = std::move(n);
    } else {
      error("Unknown statement '" + name + "'");
    }
    return result;
  }

  NodePtr parse_set(std::size_t open) {
    auto n = node(NodeKind::Set, open);
    n->x = parse_expression_sequence(false);
    if (is(T::Equals)) {
      ++cur_;
      n->y = parse_expression_sequence(false);
    } else {
      expect(T::CloseStatement, "Expected '=' or '%}'");
      parse_until(n->body, {"endset"}, "set", open);
      expect(T::OpenStatement, "Expected '{%'");
      expect_identifier("endset");
    }
    expect(T::CloseStatement, "Expected '%}'");
    return n;
  }

  NodePtr parse_if(std::size_t open) {
    auto n = node(NodeKind::If, open);
    n->x = parse_expression();
    expect(T::CloseStatement, "Expected '%}'");
    parse_until(n->body, {"elif", "else", "endif"}, "if", open);
    if (is_statement({"elif"})) {
      const std::size_t p = t_[cur_].pos;
      cur_ += 2;
      n->alt.push_back(parse_if(p));
    } else if (is_statement({"else"})) {
      cur_ += 2;
      expect(T::CloseStatement, "Expected '%}'");
      parse_until(n->alt, {"endif"}, "if", open);
    }
    return n;
  }

  NodePtr parse_for(std::size_t open) {
    auto n = node(NodeKind::For, open);
    n->x = parse_expression_sequence(true);
    if (n->x->kind != NodeKind::Identifier && n->x->kind != NodeKind::TupleLit)
      error("Expected an identifier or a tuple for the loop variable");
    if (!is_identifier("in")) error("Expected 'in' after the loop variable");
    ++cur_;
    n->y = parse_expression();
    expect(T::CloseStatement, "Expected '%}'");
    parse_until(n->body, {"endfor", "else"}, "for", open);
    if (is_statement({"else"})) {
      cur_ += 2;
      expect(T::CloseStatement, "Expected '%}'");
      parse_until(n->alt, {"endfor"}, "for", open);
    }
    return n;
  }

  NodePtr parse_expression_sequence(bool primary) {
    const std::size_t p = here();
    NodeList items;
    items.push_back(primary ? parse_primary() : parse_expression());
    const bool tuple = is(T::Comma);
    while (tuple) {
      ++cur_;
      items.push_back(primary ? parse_primary() : parse_expression());
      if (!is(T::Comma)) break;
    }
    if (!tuple) return std::move(items[0]);
    auto n = node(NodeKind::TupleLit, p);
    n->a = std::move(items);
    return n;
  }

  NodePtr parse_expression() {
    DepthGuard g(*this);
    return parse_if_expression();
  }

  NodePtr parse_if_expression() {
    auto a = parse_or();
    if (is_identifier("if")) {
      const std::size_t p = here();
      ++cur_;
      auto test = parse_or();
      if (is_identifier("else")) {
        ++cur_;
        auto n = node(NodeKind::Ternary, p);
        n->x = std::move(test);
        n->y = std::move(a);
        DepthGuard g(*this);
        n->z = parse_if_expression();
        return n;
      }
      auto n = node(NodeKind::Select, p);
      n->x = std::move(a);
      n->y = std::move(test);
      return n;
    }
    return a;
  }

  NodePtr binary(std::string op, std::size_t p, NodePtr l, NodePtr r) {
    auto n = node(NodeKind::Binary, p);
    n->str = std::move(op);
    n->x = std::move(l);
    n->y = std::move(r);
    return grown(std::move(n));
  }

  NodePtr parse_or() {
    auto left = parse_and();
    while (is_identifier("or")) {
      const std::size_t p = here();
      ++cur_;
      left = binary("or", p, std::move(left), parse_and());
    }
    return left;
  }
  NodePtr parse_and() {
    auto left = parse_not();
    while (is_identifier("and")) {
      const std::size_t p = here();
      ++cur_;
      left = binary("and", p, std::move(left), parse_not());
    }
    return left;
  }
  NodePtr parse_not() {
    if (is_identifier("not")) {
      DepthGuard g(*this);
      const std::size_t p = here();
      ++cur_;
      auto n = node(NodeKind::Unary, p);
      n->str = "not";
      n->x = parse_not();
      return n;
    }
    return parse_comparison();
  }
  NodePtr parse_comparison() {
    auto left = parse_additive();
    while (true) {
      std::string op;
      const std::size_t p = here();
      if (is_identifier("not") && is_identifier("in", 1)) {
        op = "not in";
        cur_ += 2;
      } else if (is_identifier("in")) {
        op = "in";
        ++cur_;
      } else if (is(T::Comparison)) {
        op = t_[cur_++].value;
      } else {
        break;
      }
      left = binary(op, p, std::move(left), parse_additive());
    }
    return left;
  }
  NodePtr parse_additive() {
    auto left = parse_multiplicative();
    while (is(T::Additive)) {
      const std::size_t p = here();
      std::string op = t_[cur_++].value;
      left = binary(op, p, std::move(left), parse_multiplicative());
    }
    return left;
  }
  NodePtr parse_multiplicative() {
    auto left = parse_power();
    while (is(T::Multiplicative)) {
      const std::size_t p = here();
      std::string op = t_[cur_++].value;
      left = binary(op, p, std::move(left), parse_power());
    }
    return left;
  }
  NodePtr parse_power() {
    auto left = parse_test();
    while (is(T::Exponent)) {
      const std::size_t p = here();
      ++cur_;
      left = binary("**", p, std::move(left), parse_test());
    }
    return left;
  }
  NodePtr parse_test() {
    auto operand = parse_filter();
    while (is_identifier("is")) {
      const std::size_t p = here();
      ++cur_;
      const bool negate = is_identifier("not");
      if (negate) ++cur_;
      auto name = parse_primary();
      if (name->kind != NodeKind::Identifier) error("Expected a test name after 'is'");
      auto n = node(NodeKind::Test, p);
      n->x = std::move(operand);
      n->flag = negate;
      n->str = name->str;
      operand = grown(std::move(n));
    }
    return operand;
  }
  NodePtr parse_filter() {
    auto operand = parse_unary_sign();
    while (is(T::Pipe)) {
      const std::size_t p = here();
      ++cur_;
      auto f = parse_primary();
      if (f->kind != NodeKind::Identifier) error("Expected a filter name after '|'");
      if (is(T::OpenParen)) f = parse_call(std::move(f));
      auto n = node(NodeKind::Filter, p);
      n->x = std::move(operand);
      n->y = std::move(f);
      operand = grown(std::move(n));
    }
    return operand;
  }
  NodePtr parse_unary_sign() {
    if (cur_ < t_.size() && (is(T::Unary) || is(T::Additive)) &&
        (t_[cur_].value == "-" || t_[cur_].value == "+")) {
      DepthGuard g(*this);
      auto n = node(NodeKind::Unary, here());
      n->str = t_[cur_++].value;
      n->x = parse_unary_sign();
      return n;
    }
    return parse_call_member();
  }
  NodePtr parse_call_member() {
    auto member = parse_member(parse_primary());
    if (is(T::OpenParen)) return parse_call(std::move(member));
    return member;
  }
  NodePtr parse_call(NodePtr callee) {
    DepthGuard g(*this);
    auto n = node(NodeKind::Call, callee->pos);
    n->x = std::move(callee);
    n->a = parse_args(false);
    NodePtr e = parse_member(grown(std::move(n)));
    if (is(T::OpenParen)) e = parse_call(std::move(e));
    return e;
  }

  NodeList parse_args(bool parameters) {
    expect(T::OpenParen, "Expected '('");
    NodeList args;
    std::vector<std::string> names;
    bool saw_kw = false, saw_spread = false;
    while (!is(T::CloseParen)) {
      if (cur_ >= t_.size()) error("Expected ')'");
      const bool kw_spread = is(T::Exponent);
      const bool pos_spread = is(T::Multiplicative) && t_[cur_].value == "*";
      if (parameters && (kw_spread || pos_spread))
        error("Argument unpacking is not allowed in parameter declarations");
      if (kw_spread) {
        auto n = node(NodeKind::KwSpread, here());
        ++cur_;
        n->x = parse_expression();
        args.push_back(std::move(n));
        if (is(T::Comma)) ++cur_;
        if (!is(T::CloseParen)) error("Expected ')': '**' must be applied to the final argument");
        break;
      }
      NodePtr arg;
      if (pos_spread) {
        if (saw_spread) error("Only one '*' argument unpacking is allowed");
        saw_spread = true;
        arg = node(NodeKind::Spread, here());
        ++cur_;
        arg->x = parse_expression();
      } else {
        arg = parse_expression();
        if (is(T::Equals)) {
          ++cur_;
          if (arg->kind != NodeKind::Identifier)
            error(parameters ? "Expected an identifier for a parameter declaration"
                             : "Expected an identifier for a keyword argument");
          auto kw = node(NodeKind::KwArg, arg->pos);
          kw->str = arg->str;
          kw->x = parse_expression();
          arg = std::move(kw);
        }
        if (parameters) {
          if (arg->kind != NodeKind::Identifier && arg->kind != NodeKind::KwArg)
            error("Expected an identifier for a parameter declaration");
          if (std::find(names.begin(), names.end(), arg->str) != names.end())
            error("Duplicate parameter name: " + arg->str);
          names.push_back(arg->str);
        }
        if (arg->kind == NodeKind::KwArg)
          saw_kw = true;
        else if (saw_kw)
          error(parameters ? "Non-default argument follows default argument"
                           : "Positional arguments must come before keyword arguments");
        else if (saw_spread)
          error("Positional arguments must not follow '*' argument unpacking");
      }
      args.push_back(std::move(arg));
      if (is(T::Comma)) ++cur_;
    }
    ++cur_;  // ')'
    return args;
  }

  NodePtr parse_subscript() {
    NodeList slices;  // null entries: omitted
    bool is_slice = false;
    const std::size_t p = here();
    while (!is(T::CloseSquare)) {
      if (cur_ >= t_.size()) error("Expected ']'");
      if (is(T::Colon)) {
        slices.push_back(nullptr);
        ++cur_;
        is_slice = true;
      } else {
        slices.push_back(parse_expression());
        if (is(T::Colon)) {
          ++cur_;
          is_slice = true;
        }
      }
    }
    if (slices.empty()) error("Expected at least one argument for a subscript");
    if (is_slice) {
      if (slices.size() > 3) error("Expected 0-3 arguments for a slice");
      auto n = node(NodeKind::Slice, p);
      n->x = std::move(slices[0]);
      if (slices.size() > 1) n->y = std::move(slices[1]);
      if (slices.size() > 2) n->z = std::move(slices[2]);
      return n;
    }
    return std::move(slices[0]);
  }

  NodePtr parse_member(NodePtr object) {
    while (is(T::Dot) || is(T::OpenSquare)) {
      const bool computed = is(T::OpenSquare);
      const std::size_t p = here();
      ++cur_;
      NodePtr prop;
      if (computed) {
        DepthGuard g(*this);
        prop = parse_subscript();
        expect(T::CloseSquare, "Expected ']'");
      } else {
        prop = parse_primary();
        if (prop->kind != NodeKind::Identifier && prop->kind != NodeKind::IntLit)
          error("Expected an identifier or an integer after '.'");
      }
      auto n = node(NodeKind::Member, object->pos);
      (void)p;
      n->x = std::move(object);
      n->y = std::move(prop);
      n->flag = computed;
      object = grown(std::move(n));
    }
    return object;
  }

  NodePtr parse_primary() {
    DepthGuard g(*this);
    const Token& tok = peek();
    const std::size_t p = tok.pos;
    ++cur_;
    switch (tok.type) {
      case T::Numeric: {
        if (tok.value.find('.') != std::string::npos) {
          auto n = node(NodeKind::FloatLit, p);
          n->fval = std::stod(tok.value);
          return n;
        }
        auto n = node(NodeKind::IntLit, p);
        try {
          n->ival = std::stoll(tok.value);
        } catch (const std::out_of_range&) {
          throw SyntaxFailure{"Integer literal out of range: " + tok.value, p};
        }
        return n;
      }
      case T::String: {
        auto n = node(NodeKind::StrLit, p);
        n->str = tok.value;
        while (is(T::String)) n->str += t_[cur_++].value;
        return n;
      }
      case T::Identifier: {
        auto n = node(NodeKind::Identifier, p);
        n->str = tok.value;
        return n;
      }
      case T::OpenParen: {
        auto e = parse_expression_sequence(false);
        expect(T::CloseParen, "Expected ')'");
        return e;
      }
      case T::OpenSquare: {
        auto n = node(NodeKind::ArrayLit, p);
        while (!is(T::CloseSquare)) {
          if (cur_ >= t_.size()) error("Expected ']'");
          n->a.push_back(parse_expression());
          if (is(T::Comma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      case T::OpenCurly: {
        auto n = node(NodeKind::ObjectLit, p);
        while (!is(T::CloseCurly)) {
          if (cur_ >= t_.size()) error("Expected '}'");
          n->a.push_back(parse_expression());
          expect(T::Colon, "Expected ':' between key and value");
          n->a.push_back(parse_expression());
          if (is(T::Comma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      default:
        --cur_;
        error(std::string("Unexpected token ") + token_name(tok.type) + " '" + tok.value + "'");
    }
  }

  // Which of caller / kwargs / varargs a macro or call-block body reads
  // (a simplified form of @huggingface/jinja's findAccessedSpecialMacroArguments:
  // names declared as parameters do not count).
  static void analyse_special(Node& n) {
    bool declared[3] = {false, false, false};
    static const char* names[3] = {"caller", "kwargs", "varargs"};
    for (const auto& p : n.a)
      for (int i = 0; i < 3; ++i)
        if (p->str == names[i]) declared[i] = true;
    bool used[3] = {false, false, false};
    std::vector<const Node*> stack;
    for (const auto& b : n.body) stack.push_back(b.get());
    while (!stack.empty()) {
      const Node* c = stack.back();
      stack.pop_back();
      if (c == nullptr) continue;
      if (c->kind == NodeKind::Identifier)
        for (int i = 0; i < 3; ++i)
          if (c->str == names[i] && !declared[i]) used[i] = true;
      if (c->kind == NodeKind::Member && !c->flag) {
        stack.push_back(c->x.get());
        continue;
      }
      stack.push_back(c->x.get());
      stack.push_back(c->y.get());
      stack.push_back(c->z.get());
      for (const auto& v : c->a) stack.push_back(v.get());
      for (const auto& v : c->body) stack.push_back(v.get());
      for (const auto& v : c->alt) stack.push_back(v.get());
    }
    n.uses_caller = used[0];
    n.uses_kwargs = used[1];
    n.uses_varargs = used[2];
  }

  std::vector<Token> t_;
  std::size_t cur_ = 0;
  std::size_t end_;
  std::size_t depth_ = 0;
  std::size_t max_depth_;
};

}  // namespace
}  // namespace detail

Template Template::parse(std::string_view source, std::string origin, const ParseOptions& options) {
  auto program = std::make_shared<detail::Program>();
  program->origin = std::move(origin);
  program->source.assign(source);
  program->line_starts.push_back(0);
  for (std::size_t i = 0; i < source.size(); ++i)
    if (source[i] == '\n') program->line_starts.push_back(i + 1);
  detail::Mapped m = detail::preprocess(source, options);
  try {
    auto tokens = detail::tokenize(m.s);
    detail::Parser parser(std::move(tokens), m.s.size(), options.max_parse_depth);
    program->body = parser.parse_program();
  } catch (const detail::SyntaxFailure& f) {
    const std::size_t at = m.at[std::min(f.pos, m.s.size())];
    auto [line, col] = program->line_col(at);
    throw TemplateError(program->origin, line, col, "syntax error: " + f.message);
  }
  // Offsets of nodes are in the preprocessed text: map them back.
  std::vector<detail::Node*> stack;
  for (auto& n : program->body) stack.push_back(n.get());
  while (!stack.empty()) {
    detail::Node* c = stack.back();
    stack.pop_back();
    if (c == nullptr) continue;
    c->pos = m.at[std::min(c->pos, m.s.size())];
    for (auto* p : {c->x.get(), c->y.get(), c->z.get()}) stack.push_back(p);
    for (auto& v : c->a) stack.push_back(v.get());
    for (auto& v : c->body) stack.push_back(v.get());
    for (auto& v : c->alt) stack.push_back(v.get());
  }
  return Template(std::move(program));
}

const std::string& Template::origin() const { return program_->origin; }

}  // namespace assistgen::jinja
