// A Jinja template engine for chat templates: the subset of Jinja that Hugging
// Face chat templates use, rendered the way Hugging Face's own JavaScript
// implementation (@huggingface/jinja, used by transformers.js and the Hub)
// renders it: same whitespace handling (trim_blocks, lstrip_blocks, a single
// trailing newline dropped), same value printing (true/false, JSON for lists),
// same `tojson`. It depends on nothing else in assistgen but error.hpp.
//
// Rendering is bounded: recursion depth, work (node evaluations and bytes
// built), loop iterations and output size have limits (TemplateLimits), so a
// hostile template is a TemplateError, never a hang or a crash. Errors name
// the template's line and column.
//
// Strings carry "user" ranges: text that came from a context value marked
// with Value::user_text() keeps that mark through concatenation, slicing and
// stripping (other operations mark their whole result when any input was
// marked), and Template::render_marked() reports where it lies in the output,
// so that a caller can tokenize it without recognising special tokens in it.
#pragma once

#include <assistgen/error.hpp>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace assistgen::jinja {

/// A template failed to parse or to render. what() is
/// "ORIGIN:LINE:COLUMN: MESSAGE" (line and column count from 1, columns in
/// bytes); the parts are available separately.
class TemplateError : public Error {
 public:
  /// An error at `line`:`column` (1-based) of the template named `origin`.
  TemplateError(std::string origin, std::size_t line, std::size_t column, std::string message);
  /// The template's name as given to Template::parse.
  const std::string& origin() const { return origin_; }
  /// 1-based line of the construct at fault.
  std::size_t line() const { return line_; }
  /// 1-based column (in bytes) of the construct at fault.
  std::size_t column() const { return column_; }
  /// The message without the location prefix.
  const std::string& message() const { return message_; }

 private:
  std::string origin_;
  std::size_t line_;
  std::size_t column_;
  std::string message_;
};

/// The template called raise_exception(message): the template itself rejects
/// its input (a chat template refusing a conversation). message() is the
/// template's own text.
class TemplateRaised : public TemplateError {
 public:
  using TemplateError::TemplateError;  ///< Same constructor as TemplateError.
};

class Value;
class Object;
/// A list (Jinja list or tuple).
using Array = std::vector<Value>;

/// A byte range [begin, end) of a string.
struct TextRange {
  std::size_t begin = 0;  ///< first byte
  std::size_t end = 0;    ///< one past the last byte
};

namespace detail {
struct StringData;
struct Callable;
struct NamespaceData;
}  // namespace detail

/// A value in a template's context: undefined, none, boolean, integer, float,
/// string, array, object (insertion-ordered, like a JSON object), namespace
/// or function (the last two are made by templates). Copies are cheap: arrays,
/// objects and strings are shared, and copied on write.
class Value {
 public:
  /// The kind of value held.
  enum class Kind {
    undefined,
    none,
    boolean,
    integer,
    floating,
    string,
    array,
    object,
    ns,
    function
  };

  /// An undefined value (a missing variable).
  Value() = default;
  /// none (JSON null).
  Value(std::nullptr_t) : kind_(Kind::none) {}
  /// A boolean.
  Value(bool b) : kind_(Kind::boolean), b_(b) {}
  /// An integer.
  Value(int i) : kind_(Kind::integer), i_(i) {}
  /// An integer.
  Value(long i) : kind_(Kind::integer), i_(i) {}
  /// An integer.
  Value(long long i) : kind_(Kind::integer), i_(i) {}
  /// A float.
  Value(double f) : kind_(Kind::floating), f_(f) {}
  /// A string (UTF-8).
  Value(std::string s);
  /// A string (UTF-8).
  Value(std::string_view s) : Value(std::string(s)) {}
  /// A string (UTF-8).
  Value(const char* s) : Value(std::string(s)) {}
  /// An array.
  Value(Array a);
  /// An object.
  Value(Object o);

  /// A string marked as user text (see the file comment): its special-token
  /// text is not meant to be parsed as special tokens.
  static Value user_text(std::string s);
  /// Parses JSON text (objects keep their key order). Throws FormatError
  /// naming `origin` for malformed JSON.
  static Value parse_json(std::string_view json, std::string_view origin = "JSON");
  /// An empty object.
  static Value object();
  /// An empty array.
  static Value array();

  /// The kind held.
  Kind kind() const { return kind_; }
  /// Whether this is undefined.
  bool is_undefined() const { return kind_ == Kind::undefined; }
  /// Whether this is none.
  bool is_none() const { return kind_ == Kind::none; }
  /// Whether this is a string.
  bool is_string() const { return kind_ == Kind::string; }
  /// Whether this is an array.
  bool is_array() const { return kind_ == Kind::array; }
  /// Whether this is an object.
  bool is_object() const { return kind_ == Kind::object; }

  /// The boolean held; InvalidArgument for another kind.
  bool as_bool() const;
  /// The integer held; InvalidArgument for another kind.
  std::int64_t as_int() const;
  /// The number held (integer or float); InvalidArgument for another kind.
  double as_double() const;
  /// The string held; InvalidArgument for another kind.
  const std::string& as_string() const;
  /// The array held; InvalidArgument for another kind.
  const Array& as_array() const;
  /// The object held; InvalidArgument for another kind.
  const Object& as_object() const;

  /// The member `key` of an object, or nullptr (also for non-objects).
  const Value* find(std::string_view key) const;
  /// Sets member `key` of an object (replacing an existing one, keeping its
  /// place); InvalidArgument for another kind. Returns *this.
  Value& set(std::string key, Value value);
  /// Appends to an array; InvalidArgument for another kind. Returns *this.
  Value& push_back(Value value);

  /// Compact JSON as the `tojson` filter writes it (", " and ": "
  /// separators, non-ASCII kept).
  std::string to_json() const;

  /// Internal: the string representation with its user ranges.
  const std::shared_ptr<const detail::StringData>& string_data() const { return s_; }
  /// Internal: a string value from its representation.
  static Value from_string_data(std::shared_ptr<const detail::StringData> s);
  /// Internal: the namespace held (templates' namespace()).
  const std::shared_ptr<detail::NamespaceData>& namespace_data() const { return ns_; }
  /// Internal: a namespace value.
  static Value from_namespace(std::shared_ptr<detail::NamespaceData> ns);
  /// Internal: the function held.
  const std::shared_ptr<const detail::Callable>& callable() const { return fn_; }
  /// Internal: a function value.
  static Value from_callable(std::shared_ptr<const detail::Callable> fn);
  /// Internal: the identity of a shared array/object/namespace/function, for
  /// `==` (which compares containers by identity, as Hugging Face's JS engine does).
  const void* identity() const;
  /// Internal: whether an array was made as a tuple.
  bool is_tuple() const { return tuple_; }
  /// Internal: marks an array as a tuple.
  void mark_tuple() { tuple_ = true; }

 private:
  Kind kind_ = Kind::undefined;
  bool tuple_ = false;
  bool b_ = false;
  std::int64_t i_ = 0;
  double f_ = 0.0;
  std::shared_ptr<const detail::StringData> s_;
  std::shared_ptr<Array> a_;
  std::shared_ptr<Object> o_;
  std::shared_ptr<detail::NamespaceData> ns_;
  std::shared_ptr<const detail::Callable> fn_;
};

/// An insertion-ordered string-keyed map (a JSON object).
class Object {
 public:
  /// Key/value pairs in insertion order.
  using Entries = std::vector<std::pair<std::string, Value>>;
  /// The member `key`, or nullptr.
  const Value* find(std::string_view key) const;
  /// Sets `key` (an existing key keeps its place).
  void set(std::string key, Value value);
  /// The members in insertion order.
  const Entries& entries() const { return entries_; }
  /// Number of members.
  std::size_t size() const { return entries_.size(); }

 private:
  Entries entries_;
};

/// Bounds on one render; exceeding one is a TemplateError naming the bound.
struct TemplateLimits {
  /// Nesting of macro calls, call blocks and evaluation.
  std::size_t max_depth = 200;
  /// Bytes of output, and of any one string or JSON text built on the way.
  std::size_t max_output_bytes = std::size_t{16} << 20;
  /// Loop iterations (all loops of the render together), and elements of range().
  std::size_t max_loop_iterations = 1'000'000;
  /// Work units: one per node evaluated plus one per 64 bytes or elements built.
  std::size_t max_work = 50'000'000;
};

/// Options of Template::parse.
struct ParseOptions {
  /// Drop the first newline after a block tag (Hugging Face's default).
  bool trim_blocks = true;
  /// Strip spaces and tabs before a block tag at the start of a line
  /// (Hugging Face's default).
  bool lstrip_blocks = true;
  /// Nesting of the parser (parentheses, blocks).
  std::size_t max_parse_depth = 200;
};

/// Options of Template::render.
struct RenderOptions {
  /// Bounds on the render.
  TemplateLimits limits = {};
  /// The local time strftime_now() formats; unset: the current local time.
  std::optional<std::tm> now;
};

/// The result of Template::render_marked: the text and the byte ranges of it
/// that came from user text (Value::user_text), sorted and disjoint.
struct MarkedText {
  std::string text;             ///< the rendered text
  std::vector<TextRange> user;  ///< ranges of `text` that are user text
};

namespace detail {
struct Program;
}

/// A parsed template. Immutable: render() may be called concurrently from
/// any number of threads; copies share the parsed program.
class Template {
 public:
  /// Parses `source`. `origin` names the template in errors. Throws
  /// TemplateError (with line and column) for a syntax error.
  static Template parse(std::string_view source, std::string origin = "template",
                        const ParseOptions& options = {});

  /// Renders with the variables of `context` (an object; undefined means no
  /// variables). Throws TemplateError (or TemplateRaised) on failure.
  std::string render(const Value& context, const RenderOptions& options = {}) const;
  /// As render(), also reporting where user text lies in the output.
  MarkedText render_marked(const Value& context, const RenderOptions& options = {}) const;

  /// The name given to parse().
  const std::string& origin() const;

 private:
  explicit Template(std::shared_ptr<const detail::Program> p) : program_(std::move(p)) {}
  std::shared_ptr<const detail::Program> program_;
};

}  // namespace assistgen::jinja
