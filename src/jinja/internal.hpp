// Internals of the Jinja engine shared by its parts: the string representation
// with user ranges, functions and namespaces, the syntax tree, and the
// UTF-8 / JavaScript-compatible helpers (whitespace, number printing).
#pragma once

#include <assistgen/jinja.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace assistgen::jinja {

class Interpreter;
struct Scope;

namespace detail {

struct StringData {
  std::string text;
  std::vector<TextRange> user;  // sorted, disjoint, non-empty
};

/// A failure raised while rendering, before the node at fault is known; the
/// interpreter turns it into a TemplateError at the innermost node.
struct Failure {
  std::string message;
  bool raised = false;  // raise_exception()
};
[[noreturn]] inline void fail(std::string message) { throw Failure{std::move(message)}; }

/// Call arguments: positional, then keyword.
struct Args {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* keyword(std::string_view k) const {
    for (const auto& [name, v] : kw)
      if (name == k) return &v;
    return nullptr;
  }
};

struct Callable {
  std::string name;
  std::function<Value(Interpreter&, Args&, const std::shared_ptr<Scope>& call_site)> fn;
};

struct NamespaceData {
  Object members;
};

// ---- syntax tree -------------------------------------------------------------

enum class NodeKind {
  // statements
  Text,
  Comment,
  If,
  For,
  Set,
  Macro,
  CallBlock,
  FilterBlock,
  Break,
  Continue,
  // expressions
  Identifier,
  IntLit,
  FloatLit,
  StrLit,
  ArrayLit,
  TupleLit,
  ObjectLit,
  Binary,
  Unary,
  Ternary,
  Select,
  Member,
  Slice,
  Call,
  Filter,
  Test,
  KwArg,
  Spread,
  KwSpread
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  NodeKind kind;
  std::size_t pos = 0;  // offset in the original source
  std::string str;      // identifier, string literal, operator, test/macro name
  std::int64_t ival = 0;
  double fval = 0.0;
  bool flag = false;       // Test: negated; Member: computed; CallBlock: has caller args
  std::size_t height = 1;  // of the expression tree below (bounded at parse time)
  NodePtr x, y, z;         // operands (see parser.cpp for each kind)
  NodeList a;              // arguments, elements, parameters
  NodeList body, alt;
  // Macro / CallBlock: which of caller, kwargs, varargs the body reads.
  bool uses_caller = false, uses_kwargs = false, uses_varargs = false;
};

struct Program {
  std::string origin;
  std::string source;                    // the original template text
  std::vector<std::size_t> line_starts;  // offsets of line starts in source
  NodeList body;
  /// Line and column (1-based) of an offset in the original source.
  std::pair<std::size_t, std::size_t> line_col(std::size_t offset) const;
};

// ---- text helpers ------------------------------------------------------------

/// JavaScript's whitespace set (String.prototype.trim, /\s/).
bool is_js_space(char32_t c);
/// Decodes the code point at s[i] and advances i (invalid bytes: U+FFFD, one byte).
char32_t next_cp(std::string_view s, std::size_t& i);
/// Appends the UTF-8 encoding of c.
void append_utf8(std::string& out, char32_t c);
/// JavaScript's Number.prototype.toString for a double.
std::string js_number(double d);
/// A float as @huggingface/jinja prints it (integral values with ".0").
std::string float_to_string(double d);

/// Options of the tojson filter (Python json.dumps's, as @huggingface/jinja reads them).
struct JsonOptions {
  std::optional<std::int64_t> indent;
  bool ensure_ascii = false;
  std::optional<std::pair<std::string, std::string>> separators;
  bool sort_keys = false;
};
/// JSON text of `v` exactly as @huggingface/jinja's toJSON writes it;
/// `undefined_to_null` false prints undefined as `undefined` (printing a
/// list); sets *any_user when a user-marked string (or any key) was written.
/// Fails past `limit` bytes.
std::string to_json(const Value& v, const JsonOptions& o, bool undefined_to_null = true,
                    bool* any_user = nullptr, std::size_t limit = std::size_t{1} << 30);

}  // namespace detail
}  // namespace assistgen::jinja
