// Rendering: the interpreter of the syntax tree, with the values, operators,
// filters, tests, string methods and globals of @huggingface/jinja's
// runtime.ts (its semantics, quirks included, are what Hugging Face's chat
// templates are written against), and the bounds of TemplateLimits.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "internal.hpp"

namespace assistgen::jinja {

using detail::Args;
using detail::Callable;
using detail::fail;
using detail::Failure;
using detail::Node;
using detail::NodeKind;
using detail::NodeList;
using detail::StringData;
using Kind = Value::Kind;

struct Scope {
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;
  bool call_block = false;

  explicit Scope(std::shared_ptr<Scope> p = nullptr) : parent(std::move(p)) {}
  void set(std::string_view name, Value v) {
    for (auto& [k, x] : vars)
      if (k == name) {
        x = std::move(v);
        return;
      }
    vars.emplace_back(std::string(name), std::move(v));
  }
  const Value* local(std::string_view name) const {
    for (const auto& [k, x] : vars)
      if (k == name) return &x;
    return nullptr;
  }
  Value lookup(std::string_view name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent.get())
      if (const Value* v = s->local(name)) return *v;
    return Value();
  }
};

namespace {

struct BreakSignal {};
struct ContinueSignal {};

// ---- strings with user ranges ----------------------------------------------------

// Text being built (output, macro bodies, concatenations) with its user ranges.
struct Text {
  std::string s;
  std::vector<TextRange> user;

  void append(std::string_view t, const std::vector<TextRange>* ranges = nullptr) {
    const std::size_t base = s.size();
    s.append(t);
    if (ranges)
      for (const auto& r : *ranges) add({r.begin + base, r.end + base});
  }
  void append_str(const Value& v) { append(v.as_string(), &v.string_data()->user); }
  void add(TextRange r) {
    if (r.begin >= r.end) return;
    if (!user.empty() && user.back().end >= r.begin) {
      user.back().end = std::max(user.back().end, r.end);
      return;
    }
    user.push_back(r);
  }
  Value value() && {
    return Value::from_string_data(
        std::make_shared<const StringData>(StringData{std::move(s), std::move(user)}));
  }
};

bool has_user(const Value& v) { return v.is_string() && !v.string_data()->user.empty(); }

Value str(std::string s, bool user = false) {
  if (!user) return Value(std::move(s));
  return Value::user_text(std::move(s));
}

// The part [b, e) of a string, keeping its user ranges.
Value substr(const Value& v, std::size_t b, std::size_t e) {
  const StringData& d = *v.string_data();
  Text t;
  t.s = d.text.substr(b, e - b);
  for (const auto& r : d.user) {
    const std::size_t rb = std::max(r.begin, b), re = std::min(r.end, e);
    if (rb < re) t.add({rb - b, re - b});
  }
  return std::move(t).value();
}

// Code-point boundaries of a UTF-8 string.
std::vector<std::size_t> cp_starts(std::string_view s) {
  std::vector<std::size_t> out;
  std::size_t i = 0;
  while (i < s.size()) {
    out.push_back(i);
    detail::next_cp(s, i);
  }
  return out;
}

std::size_t utf16_length(std::string_view s) {
  std::size_t n = 0, i = 0;
  while (i < s.size()) n += detail::next_cp(s, i) >= 0x10000 ? 2 : 1;
  return n;
}

// Trim JavaScript whitespace; returns [b, e).
std::pair<std::size_t, std::size_t> trim_bounds(std::string_view s, bool left, bool right) {
  std::size_t b = 0, e = s.size();
  if (left)
    while (b < e) {
      std::size_t t = b;
      if (!detail::is_js_space(detail::next_cp(s, t))) break;
      b = t;
    }
  if (right)
    while (e > b) {
      std::size_t p = e - 1;
      while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
      std::size_t t = p;
      if (!detail::is_js_space(detail::next_cp(s, t))) break;
      e = p;
    }
  return {b, e};
}

// Case mapping for ASCII, Latin-1, Greek and Cyrillic (each keeps its UTF-8
// length, so user ranges are unchanged).
char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) return c - 32;
  if (c == 0xFF) return 0x178;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}
char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c == 0x178) return 0xFF;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}
Value map_case(const Value& v, char32_t (*f)(char32_t)) {
  const std::string& s = v.as_string();
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) detail::append_utf8(out, f(detail::next_cp(s, i)));
  if (out.size() != s.size()) return str(std::move(out), has_user(v));
  return Value::from_string_data(
      std::make_shared<const StringData>(StringData{std::move(out), v.string_data()->user}));
}

bool is_ascii_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

const char* type_name(const Value& v) {
  switch (v.kind()) {
    case Kind::undefined:
      return "UndefinedValue";
    case Kind::none:
      return "NullValue";
    case Kind::boolean:
      return "BooleanValue";
    case Kind::integer:
      return "IntegerValue";
    case Kind::floating:
      return "FloatValue";
    case Kind::string:
      return "StringValue";
    case Kind::array:
      return v.is_tuple() ? "TupleValue" : "ArrayValue";
    case Kind::object:
      return "ObjectValue";
    case Kind::ns:
      return "NamespaceValue";
    case Kind::function:
      return "FunctionValue";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::undefined:
    case Kind::none:
      return false;
    case Kind::boolean:
      return v.as_bool();
    case Kind::integer:
      return v.as_int() != 0;
    case Kind::floating: {
      const double d = v.as_double();
      return d != 0 && !std::isnan(d);
    }
    case Kind::string:
      return !v.as_string().empty();
    case Kind::array:
      return !v.as_array().empty();
    case Kind::object:
      return v.as_object().size() > 0;
    case Kind::ns:
    case Kind::function:
      return true;
  }
  return false;
}

bool is_number(const Value& v) { return v.kind() == Kind::integer || v.kind() == Kind::floating; }
bool is_numeric_like(const Value& v) { return is_number(v) || v.kind() == Kind::boolean; }
double num(const Value& v) {
  if (v.kind() == Kind::boolean) return v.as_bool() ? 1 : 0;
  return v.as_double();
}

// JavaScript's Number(string).
double js_to_number(std::string_view s) {
  auto [b, e] = trim_bounds(s, true, true);
  std::string t(s.substr(b, e - b));
  if (t.empty()) return 0;
  if (t == "Infinity" || t == "+Infinity") return INFINITY;
  if (t == "-Infinity") return -INFINITY;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    if (t.find_first_not_of("0123456789abcdefABCDEF", 2) != std::string::npos) return NAN;
    return static_cast<double>(std::stoull(t.substr(2), nullptr, 16));
  }
  if (t.find_first_not_of("0123456789+-.eE") != std::string::npos) return NAN;
  char* end = nullptr;
  const double d = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size() ? d : NAN;
}

// JavaScript's `===` on the values underneath.
bool strict_eq(const Value& a, const Value& b) {
  if (is_number(a) && is_number(b)) return a.as_double() == b.as_double();
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::undefined:
    case Kind::none:
      return true;
    case Kind::boolean:
      return a.as_bool() == b.as_bool();
    case Kind::string:
      return a.as_string() == b.as_string();
    default:
      return a.identity() == b.identity();
  }
}

// JavaScript's `==` on the values underneath (@huggingface/jinja's `==`).
bool loose_eq(const Value& a, const Value& b) {
  const bool an = a.kind() == Kind::none || a.kind() == Kind::undefined;
  const bool bn = b.kind() == Kind::none || b.kind() == Kind::undefined;
  if (an || bn) return an && bn;
  if (a.kind() == Kind::string && b.kind() == Kind::string) return a.as_string() == b.as_string();
  if (is_numeric_like(a) && is_numeric_like(b)) return num(a) == num(b);
  if (a.kind() == Kind::string && is_numeric_like(b)) return js_to_number(a.as_string()) == num(b);
  if (b.kind() == Kind::string && is_numeric_like(a)) return js_to_number(b.as_string()) == num(a);
  if (a.kind() == b.kind()) return a.identity() == b.identity();
  return false;
}

// Sorting comparison of @huggingface/jinja (compareRuntimeValues).
int compare_values(const Value& a, const Value& b, bool case_sensitive) {
  if (a.is_none() && b.is_none()) return 0;
  if (a.is_none() || b.is_none())
    fail(std::string("Cannot compare ") + type_name(a) + " with " + type_name(b));
  if (a.is_undefined() && b.is_undefined()) return 0;
  if (a.is_undefined() || b.is_undefined())
    fail(std::string("Cannot compare ") + type_name(a) + " with " + type_name(b));
  if (is_numeric_like(a) && is_numeric_like(b)) {
    const double x = num(a), y = num(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind() != b.kind())
    fail(std::string("Cannot compare different types: ") + type_name(a) + " and " + type_name(b));
  if (a.is_string()) {
    std::string x = a.as_string(), y = b.as_string();
    if (!case_sensitive) {
      x = map_case(Value(x), to_lower).as_string();
      y = map_case(Value(y), to_lower).as_string();
    }
    // JavaScript compares UTF-16 code units; for UTF-8 byte order agrees
    // except between astral characters and U+E000..U+FFFF.
    return x < y ? -1 : x > y ? 1 : 0;
  }
  fail(std::string("Cannot compare type: ") + type_name(a));
}

std::tm local_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  return tm;
}

std::string strftime_js(const std::tm& tm, std::string_view fmt) {
  static const char* kLong[] = {"January",   "February", "March",    "April",
                                "May",       "June",     "July",     "August",
                                "September", "October",  "November", "December"};
  static const char* kShort[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto pad2 = [](int n) { return (n < 10 ? "0" : "") + std::to_string(n); };
  std::string out;
  for (std::size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%' || i + 1 >= fmt.size()) {
      out.push_back(fmt[i]);
      continue;
    }
    const char c = fmt[i + 1];
    const int mon = std::clamp(tm.tm_mon, 0, 11);
    switch (c) {
      case 'Y':
        out += std::to_string(tm.tm_year + 1900);
        break;
      case 'm':
        out += pad2(tm.tm_mon + 1);
        break;
      case 'd':
        out += pad2(tm.tm_mday);
        break;
      case 'b':
        out += kShort[mon];
        break;
      case 'B':
        out += kLong[mon];
        break;
      case 'H':
        out += pad2(tm.tm_hour);
        break;
      case 'M':
        out += pad2(tm.tm_min);
        break;
      case '%':
        out += "%";
        break;
      default:
        out.push_back('%');
        continue;  // not a directive: kept as written
    }
    ++i;
  }
  return out;
}

}  // namespace

// ---- the interpreter ------------------------------------------------------------

class Interpreter {
 public:
  Interpreter(const detail::Program& p, const RenderOptions& o) : program_(p), opt_(o) {}

  Text run(const Value& context) {
    auto global = std::make_shared<Scope>();
    setup_globals(*global);
    if (context.is_object())
      for (const auto& [k, v] : context.as_object().entries()) global->set(k, v);
    else if (!context.is_undefined())
      throw InvalidArgument("jinja::Template::render: the context must be an object");
    Text out;
    render_block(program_.body, global, out);
    return out;
  }

  // ---- bounds ----
  void charge(std::size_t units) {
    work_ += units;
    if (work_ > opt_.limits.max_work)
      fail("the template exceeds the work limit (" + std::to_string(opt_.limits.max_work) +
           " units): it loops or recurses too much");
  }
  void check_size(std::size_t bytes) {
    if (bytes > opt_.limits.max_output_bytes)
      fail("the template builds a string of more than " +
           std::to_string(opt_.limits.max_output_bytes) + " bytes (the output limit)");
    charge(bytes / 64);
  }
  void count_iteration() {
    if (++iterations_ > opt_.limits.max_loop_iterations)
      fail("the template exceeds the loop limit of " +
           std::to_string(opt_.limits.max_loop_iterations) + " iterations");
  }
  struct DepthGuard {
    Interpreter& in;
    explicit DepthGuard(Interpreter& i) : in(i) {
      if (++in.depth_ > in.opt_.limits.max_depth)
        fail("the template nests or recurses more than " +
             std::to_string(in.opt_.limits.max_depth) + " levels deep");
    }
    ~DepthGuard() { --in.depth_; }
  };

  std::size_t limit() const { return opt_.limits.max_output_bytes; }

  // ---- errors at nodes ----
  [[noreturn]] void raise_at(const Node& n, const Failure& f) {
    auto [line, col] = program_.line_col(n.pos);
    if (f.raised) throw TemplateRaised(program_.origin, line, col, f.message);
    throw TemplateError(program_.origin, line, col, f.message);
  }

  // ---- statements ----
  void render_block(const NodeList& body, const std::shared_ptr<Scope>& scope, Text& out) {
    for (const auto& st : body) {
      const Node& n = *st;
      try {
        switch (n.kind) {
          case NodeKind::Text:
            out.append(std::string_view(n.str));
            break;
          case NodeKind::Comment:
            break;
          case NodeKind::If: {
            DepthGuard g(*this);
            charge(1);
            const bool t = truthy(eval(*n.x, scope));
            render_block(t ? n.body : n.alt, scope, out);
            break;
          }
          case NodeKind::For: {
            DepthGuard g(*this);
            render_for(n, scope, out);
            break;
          }
          case NodeKind::Set:
            exec_set(n, scope);
            break;
          case NodeKind::Break:
            throw BreakSignal{};
          case NodeKind::Continue:
            throw ContinueSignal{};
          default: {
            const Value v = eval(n, scope);
            if (v.kind() != Kind::none && v.kind() != Kind::undefined) append_value(out, v);
          }
        }
      } catch (const Failure& f) {
        raise_at(n, f);
      }
      if (out.s.size() > limit())
        throw TemplateError(
            program_.origin, program_.line_col(n.pos).first, program_.line_col(n.pos).second,
            "the output exceeds the limit of " + std::to_string(limit()) + " bytes");
    }
  }

  void append_value(Text& out, const Value& v) {
    if (v.is_string())
      out.append_str(v);
    else
      out.append(to_display(v).as_string(), &to_display(v).string_data()->user);
  }

  // What `~` and `+` with a string make of an operand: @huggingface/jinja
  // takes JavaScript's toString of the value underneath, which is not how it
  // prints one. Numbers are JavaScript's (1.0 is "1"), a mapping (object,
  // namespace, loop) is "[object Map]", a list is its elements as printed
  // joined by "," (none and undefined as "undefined", an empty list ""). A
  // function would be its JavaScript source: an error here.
  void append_operand(Text& out, const Value& v) {
    switch (v.kind()) {
      case Kind::floating:
        out.append(detail::js_number(v.as_double()));
        return;
      case Kind::object:
      case Kind::ns:
        out.append("[object Map]");
        return;
      case Kind::array: {
        const Array& a = v.as_array();
        charge(a.size() / 64);
        for (std::size_t i = 0; i < a.size(); ++i) {
          if (i) out.append(",");
          if (a[i].is_none() || a[i].is_undefined())
            out.append("undefined");
          else if (a[i].kind() == Kind::function)
            fail("Cannot convert a function to a string");
          else
            append_value(out, a[i]);
          check_size(out.s.size());
        }
        return;
      }
      case Kind::function:
        fail("Cannot convert a function to a string");
      default:
        append_value(out, v);
    }
  }

  // toString of a value (printing).
  Value to_display(const Value& v) {
    switch (v.kind()) {
      case Kind::string:
        return v;
      case Kind::integer:
        return Value(std::to_string(v.as_int()));
      case Kind::floating:
        return Value(detail::float_to_string(v.as_double()));
      case Kind::boolean:
        return Value(v.as_bool() ? "true" : "false");
      case Kind::none:
        return Value("null");
      case Kind::undefined:
        return Value("undefined");
      case Kind::function:
        return Value("[function]");
      default: {
        bool user = false;
        std::string j = detail::to_json(v, {}, false, &user, limit());
        charge(j.size() / 64);
        return str(std::move(j), user);
      }
    }
  }

  void bind_loop_var(const Node& var, const Value& item, Scope& scope) {
    if (var.kind == NodeKind::Identifier) {
      scope.set(var.str, item);
      return;
    }
    const Array& values = item.as_array();
    for (std::size_t j = 0; j < var.a.size(); ++j) {
      if (var.a[j]->kind != NodeKind::Identifier) fail("Cannot unpack to a non-identifier");
      scope.set(var.a[j]->str, j < values.size() ? values[j] : Value());
    }
  }

  void render_for(const Node& n, const std::shared_ptr<Scope>& env, Text& out) {
    auto scope = std::make_shared<Scope>(env);
    const Node* test = nullptr;
    Value iterable;
    if (n.y->kind == NodeKind::Select) {
      iterable = eval(*n.y->x, scope);
      test = n.y->y.get();
    } else {
      iterable = eval(*n.y, scope);
    }
    if (iterable.is_object()) {
      Array keys;
      for (const auto& [k, v] : iterable.as_object().entries()) keys.emplace_back(k);
      iterable = Value(std::move(keys));
    } else if (!iterable.is_array()) {
      fail(std::string("Expected iterable or object type in for loop: got ") + type_name(iterable));
    }
    const Node& var = *n.x;
    std::vector<Value> items;
    for (const Value& item : iterable.as_array()) {
      if (var.kind == NodeKind::TupleLit) {
        if (!item.is_array())
          fail(std::string("Cannot unpack non-iterable type: ") + type_name(item));
        const std::size_t want = var.a.size(), have = item.as_array().size();
        if (want != have)
          fail(std::string("Too ") + (want > have ? "few" : "many") + " items to unpack");
      }
      if (test) {
        count_iteration();
        auto ls = std::make_shared<Scope>(scope);
        bind_loop_var(var, item, *ls);
        if (!truthy(eval(*test, ls))) continue;
      }
      items.push_back(item);
    }
    bool none = true;
    for (std::size_t i = 0; i < items.size(); ++i) {
      count_iteration();
      Object loop;
      const auto len = static_cast<long long>(items.size()), k = static_cast<long long>(i);
      loop.set("index", Value(k + 1));
      loop.set("index0", Value(k));
      loop.set("revindex", Value(len - k));
      loop.set("revindex0", Value(len - k - 1));
      loop.set("first", Value(i == 0));
      loop.set("last", Value(k == len - 1));
      loop.set("length", Value(len));
      loop.set("previtem", i > 0 ? items[i - 1] : Value());
      loop.set("nextitem", i + 1 < items.size() ? items[i + 1] : Value());
      scope->set("loop", Value(std::move(loop)));
      bind_loop_var(var, items[i], *scope);
      try {
        render_block(n.body, scope, out);
      } catch (const ContinueSignal&) {
        continue;
      } catch (const BreakSignal&) {
        break;
      }
      none = false;
    }
    if (none) render_block(n.alt, scope, out);
  }

  void exec_set(const Node& n, const std::shared_ptr<Scope>& scope) {
    Value rhs;
    if (n.y) {
      rhs = eval(*n.y, scope);
    } else {
      Text t;
      render_block(n.body, scope, t);
      rhs = std::move(t).value();
    }
    const Node& lhs = *n.x;
    if (lhs.kind == NodeKind::Identifier) {
      scope->set(lhs.str, std::move(rhs));
    } else if (lhs.kind == NodeKind::TupleLit) {
      if (!rhs.is_array())
        fail(std::string("Cannot unpack non-iterable type in set: ") + type_name(rhs));
      const Array& arr = rhs.as_array();
      if (arr.size() != lhs.a.size())
        fail(std::string("Too ") + (lhs.a.size() > arr.size() ? "few" : "many") +
             " items to unpack in set");
      for (std::size_t i = 0; i < arr.size(); ++i) {
        if (lhs.a[i]->kind != NodeKind::Identifier)
          fail("Cannot unpack to a non-identifier in set");
        scope->set(lhs.a[i]->str, arr[i]);
      }
    } else if (lhs.kind == NodeKind::Member) {
      const Value obj = eval(*lhs.x, scope);
      if (obj.kind() != Kind::ns) fail("cannot assign attribute on non-namespace object");
      if (lhs.y->kind != NodeKind::Identifier)
        fail("Cannot assign to member with non-identifier property");
      obj.namespace_data()->members.set(lhs.y->str, std::move(rhs));
    } else {
      fail("Invalid left-hand side of an assignment");
    }
  }

  // ---- expressions ----
  Value eval(const Node& n, const std::shared_ptr<Scope>& scope) {
    DepthGuard g(*this);
    charge(1);
    try {
      return eval_inner(n, scope);
    } catch (const Failure& f) {
      raise_at(n, f);
    }
  }

  Value eval_opt(const Node* n, const std::shared_ptr<Scope>& scope) {
    return n ? eval(*n, scope) : Value();
  }

  Value eval_inner(const Node& n, const std::shared_ptr<Scope>& scope) {
    switch (n.kind) {
      case NodeKind::Identifier:
        return scope->lookup(n.str);
      case NodeKind::IntLit:
        return Value(static_cast<long long>(n.ival));
      case NodeKind::FloatLit:
        return Value(n.fval);
      case NodeKind::StrLit:
      case NodeKind::Text:
        return Value(n.str);
      case NodeKind::Binary:
        return eval_binary(n, scope);
      case NodeKind::Member:
        return eval_member(n, scope);
      case NodeKind::Call: {
        Args args = eval_args(n.a, scope);
        const Value fn = eval(*n.x, scope);
        if (fn.kind() != Kind::function)
          fail(std::string("Cannot call something that is not a function: got ") + type_name(fn));
        return fn.callable()->fn(*this, args, scope);
      }
      case NodeKind::Filter:
        return apply_filter(eval(*n.x, scope), *n.y, scope);
      case NodeKind::Test: {
        const Value v = eval(*n.x, scope);
        const bool r = run_test(n.str, v, nullptr);
        return Value(n.flag ? !r : r);
      }
      case NodeKind::Ternary:
        return truthy(eval(*n.x, scope)) ? eval(*n.y, scope) : eval(*n.z, scope);
      case NodeKind::Select:
        if (!truthy(eval(*n.y, scope))) return Value();
        return eval(*n.x, scope);
      case NodeKind::Unary: {
        const Value v = eval(*n.x, scope);
        if (n.str == "not") return Value(!truthy(v));
        const double sign = n.str == "-" ? -1 : 1;
        if (v.kind() == Kind::floating) return Value(sign * v.as_double());
        if (v.kind() == Kind::integer || v.kind() == Kind::boolean) {
          const long long x = v.kind() == Kind::boolean ? (v.as_bool() ? 1 : 0) : v.as_int();
          if (sign < 0 && x == INT64_MIN) fail("integer overflow");
          return Value(sign < 0 ? -x : x);
        }
        fail("Unknown operator \"" + n.str + "\" for " + type_name(v));
      }
      case NodeKind::ArrayLit:
      case NodeKind::TupleLit: {
        Array a;
        for (const auto& e : n.a) a.push_back(eval(*e, scope));
        charge(a.size() / 64);
        Value v(std::move(a));
        if (n.kind == NodeKind::TupleLit) v.mark_tuple();
        return v;
      }
      case NodeKind::ObjectLit: {
        Object o;
        for (std::size_t i = 0; i + 1 < n.a.size(); i += 2) {
          const Value k = eval(*n.a[i], scope);
          if (!k.is_string()) fail(std::string("Object keys must be strings: got ") + type_name(k));
          o.set(k.as_string(), eval(*n.a[i + 1], scope));
        }
        return Value(std::move(o));
      }
      case NodeKind::Macro:
        define_macro(n, scope);
        return Value(nullptr);
      case NodeKind::CallBlock:
        return eval_call_block(n, scope);
      case NodeKind::FilterBlock: {
        Text t;
        render_block(n.body, scope, t);
        return apply_filter(std::move(t).value(), *n.x, scope);
      }
      case NodeKind::Comment:
        return Value(nullptr);
      default:
        fail("Unexpected expression");
    }
  }

  Args eval_args(const NodeList& args, const std::shared_ptr<Scope>& scope) {
    Args out;
    for (const auto& a : args) {
      if (a->kind == NodeKind::Spread) {
        const Value v = eval(*a->x, scope);
        if (!v.is_array()) fail(std::string("Cannot unpack non-iterable type: ") + type_name(v));
        for (const auto& e : v.as_array()) out.pos.push_back(e);
      } else if (a->kind != NodeKind::KwArg && a->kind != NodeKind::KwSpread) {
        out.pos.push_back(eval(*a, scope));
      }
    }
    auto add_kw = [&](const std::string& k, Value v) {
      if (out.keyword(k)) fail("Got multiple values for keyword argument '" + k + "'");
      out.kw.emplace_back(k, std::move(v));
    };
    for (const auto& a : args) {
      if (a->kind == NodeKind::KwArg) {
        add_kw(a->str, eval(*a->x, scope));
      } else if (a->kind == NodeKind::KwSpread) {
        const Value v = eval(*a->x, scope);
        if (!v.is_object())
          fail(std::string("Argument after ** must be a mapping, not ") + type_name(v));
        for (const auto& [k, x] : v.as_object().entries()) add_kw(k, x);
      }
    }
    return out;
  }

  Value eval_binary(const Node& n, const std::shared_ptr<Scope>& scope) {
    const std::string& op = n.str;
    const Value left = eval(*n.x, scope);
    if (op == "and") return truthy(left) ? eval(*n.y, scope) : left;
    if (op == "or") return truthy(left) ? left : eval(*n.y, scope);
    const Value right = eval(*n.y, scope);
    if (op == "==") return Value(loose_eq(left, right));
    if (op == "!=") return Value(!loose_eq(left, right));
    if (is_number(left) && is_number(right) && op != "~" && op != "**") {
      const bool is_float = left.kind() == Kind::floating || right.kind() == Kind::floating;
      if (op == "<" || op == ">" || op == "<=" || op == ">=") {
        const double a = left.as_double(), b = right.as_double();
        return Value(op == "<" ? a < b : op == ">" ? a > b : op == "<=" ? a <= b : a >= b);
      }
      if (op == "/") return Value(left.as_double() / right.as_double());
      if (is_float) {
        const double a = left.as_double(), b = right.as_double();
        if (op == "+") return Value(a + b);
        if (op == "-") return Value(a - b);
        if (op == "*") return Value(a * b);
        if (op == "//") return Value(std::floor(a / b));
        if (op == "%") return Value(std::fmod(a, b));
      } else {
        const long long a = left.as_int(), b = right.as_int();
        long long r = 0;
        if (op == "+" || op == "-" || op == "*") {
          const bool o = op == "+"   ? __builtin_add_overflow(a, b, &r)
                         : op == "-" ? __builtin_sub_overflow(a, b, &r)
                                     : __builtin_mul_overflow(a, b, &r);
          if (o) fail("integer overflow in '" + op + "'");
          return Value(r);
        }
        if (op == "//" || op == "%") {
          if (b == 0) fail("integer division or modulo by zero");
          if (a == INT64_MIN && b == -1) fail("integer overflow in '" + op + "'");
          if (op == "%") return Value(a % b);  // sign of the dividend, as in JavaScript
          long long q = a / b;
          if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
          return Value(q);
        }
      }
    } else if (left.is_undefined() || right.is_undefined()) {
      if (right.is_undefined() && (op == "in" || op == "not in")) return Value(op == "not in");
      if (op == "~" && !left.is_none() && !right.is_none()) {
        Text t;
        if (!left.is_undefined()) append_operand(t, left);
        if (!right.is_undefined()) append_operand(t, right);
        check_size(t.s.size());
        return std::move(t).value();
      }
      fail("Cannot perform operation " + op + " on undefined values");
    } else if (left.is_none() || right.is_none()) {
      fail("Cannot perform operation on null values");
    } else if (op == "~") {
      Text t;
      append_operand(t, left);
      append_operand(t, right);
      check_size(t.s.size());
      return std::move(t).value();
    } else if (op == "**" && is_numeric_like(left) && is_numeric_like(right)) {
      const double a = num(left), b = num(right);
      if (a == 0 && b < 0) fail("0.0 cannot be raised to a negative power");
      const double r = std::pow(a, b);
      if (!std::isfinite(r)) fail("Exponentiation result is not a finite real number");
      if (left.kind() == Kind::floating || right.kind() == Kind::floating || b < 0) return Value(r);
      if (std::fabs(r) >= 9.2e18) fail("integer overflow in '**'");
      return Value(static_cast<long long>(r));
    } else if (left.is_array() && right.is_array()) {
      if (op == "+") {
        Array a = left.as_array();
        a.insert(a.end(), right.as_array().begin(), right.as_array().end());
        charge(a.size() / 64);
        return Value(std::move(a));
      }
    } else if (right.is_array()) {
      bool member = false;
      for (const auto& x : right.as_array())
        if (strict_eq(x, left)) {
          member = true;
          break;
        }
      if (op == "in") return Value(member);
      if (op == "not in") return Value(!member);
    }
    if ((left.is_string() || right.is_string()) && op == "+") {
      Text t;
      append_operand(t, left);
      append_operand(t, right);
      check_size(t.s.size());
      return std::move(t).value();
    }
    if (left.is_string() && right.is_string() && (op == "in" || op == "not in")) {
      const bool r = right.as_string().find(left.as_string()) != std::string::npos;
      return Value(op == "in" ? r : !r);
    }
    if (left.is_string() && right.is_object() && (op == "in" || op == "not in")) {
      const bool r = right.as_object().find(left.as_string()) != nullptr;
      return Value(op == "in" ? r : !r);
    }
    fail("Unknown operator \"" + op + "\" between " + type_name(left) + " and " + type_name(right));
  }

  Value eval_member(const Node& n, const std::shared_ptr<Scope>& scope) {
    const Value object = eval(*n.x, scope);
    Value property;
    if (n.flag) {
      if (n.y->kind == NodeKind::Slice) return eval_slice(object, *n.y, scope);
      property = eval(*n.y, scope);
    } else if (n.y->kind == NodeKind::IntLit) {
      property = Value(static_cast<long long>(n.y->ival));
    } else {
      property = Value(n.y->str);
    }
    if (object.is_object() || object.kind() == Kind::ns) {
      if (!property.is_string())
        fail(std::string("Cannot access property with non-string: got ") + type_name(property));
      const Object& o = object.is_object() ? object.as_object() : object.namespace_data()->members;
      if (const Value* v = o.find(property.as_string())) return *v;
      if (object.is_object()) return builtin(object, property.as_string());
      return Value();
    }
    if (object.is_array() || object.is_string()) {
      if (property.kind() == Kind::integer) {
        long long i = property.as_int();
        if (object.is_array()) {
          const Array& a = object.as_array();
          const long long len = static_cast<long long>(a.size());
          if (i < 0) i += len;
          return (i >= 0 && i < len) ? a[static_cast<std::size_t>(i)] : Value();
        }
        const std::string& s = object.as_string();
        auto starts = cp_starts(s);
        const long long len = static_cast<long long>(starts.size());
        if (i < 0) i += len;
        if (i < 0 || i >= len) return Value();
        const std::size_t b = starts[static_cast<std::size_t>(i)];
        const std::size_t e = static_cast<std::size_t>(i + 1) < starts.size()
                                  ? starts[static_cast<std::size_t>(i + 1)]
                                  : s.size();
        return substr(object, b, e);
      }
      if (property.is_string()) return builtin(object, property.as_string());
      fail(std::string("Cannot access property with non-string/non-number: got ") +
           type_name(property));
    }
    if (!property.is_string())
      fail(std::string("Cannot access property with non-string: got ") + type_name(property));
    return Value();
  }

  static void slice_bounds(long long len, std::optional<long long> start,
                           std::optional<long long> stop, long long step, long long& b,
                           long long& e) {
    if (step > 0) {
      b = start ? (*start < 0 ? std::max(len + *start, 0LL) : std::min(*start, len)) : 0;
      e = stop ? (*stop < 0 ? std::max(len + *stop, 0LL) : std::min(*stop, len)) : len;
    } else {
      b = start ? (*start < 0 ? std::max(len + *start, -1LL) : std::min(*start, len - 1)) : len - 1;
      e = stop ? (*stop < -1 ? std::max(len + *stop, -1LL) : std::min(*stop, len - 1)) : -1;
    }
  }

  Value eval_slice(const Value& object, const Node& s, const std::shared_ptr<Scope>& scope) {
    if (!object.is_array() && !object.is_string()) fail("Slice object must be an array or string");
    auto get = [&](const Node* p, const char* what) -> std::optional<long long> {
      const Value v = eval_opt(p, scope);
      if (v.is_undefined()) return std::nullopt;
      if (v.kind() != Kind::integer)
        fail(std::string("Slice ") + what + " must be numeric or undefined");
      return v.as_int();
    };
    const auto start = get(s.x.get(), "start");
    const auto stop = get(s.y.get(), "stop");
    const auto step_opt = get(s.z.get(), "step");
    const long long step = step_opt.value_or(1);
    if (step == 0) fail("slice step cannot be zero");
    const long long len = object.is_array()
                              ? static_cast<long long>(object.as_array().size())
                              : static_cast<long long>(cp_starts(object.as_string()).size());
    long long b, e;
    slice_bounds(len, start, stop, step, b, e);
    const long long dir = step > 0 ? 1 : -1;
    if (object.is_array()) {
      Array out;
      for (long long i = b; dir * i < dir * e; i += step)
        out.push_back(object.as_array()[static_cast<std::size_t>(i)]);
      charge(out.size() / 64);
      return Value(std::move(out));
    }
    const std::string& str_ = object.as_string();
    auto starts = cp_starts(str_);
    starts.push_back(str_.size());
    if (step == 1) {
      if (b >= e) return Value("");
      return substr(object, starts[static_cast<std::size_t>(b)],
                    starts[static_cast<std::size_t>(e)]);
    }
    std::string out;
    for (long long i = b; dir * i < dir * e; i += step)
      out +=
          str_.substr(starts[static_cast<std::size_t>(i)], starts[static_cast<std::size_t>(i) + 1] -
                                                               starts[static_cast<std::size_t>(i)]);
    charge(out.size() / 64);
    return str(std::move(out), has_user(object));
  }

  // ---- built-in methods of values ----
  Value method(const Value& recv, std::string name,
               std::function<Value(Interpreter&, const Value&, Args&)> f) {
    auto c = std::make_shared<Callable>();
    c->name = name;
    c->fn = [recv, f = std::move(f)](Interpreter& in, Args& a, const std::shared_ptr<Scope>&) {
      return f(in, recv, a);
    };
    return Value::from_callable(std::move(c));
  }

  Value builtin(const Value& recv, const std::string& name) {
    if (recv.is_string()) return string_builtin(recv, name);
    if (recv.is_array()) {
      if (name == "length") return Value(static_cast<long long>(recv.as_array().size()));
      return Value();
    }
    if (recv.is_object()) {
      if (name == "get")
        return method(recv, name, [](Interpreter&, const Value& o, Args& a) {
          const Value key = a.pos.empty() ? Value() : a.pos[0];
          if (!key.is_string())
            fail(std::string("Object key must be a string: got ") + type_name(key));
          if (const Value* v = o.as_object().find(key.as_string())) return *v;
          return a.pos.size() > 1 ? a.pos[1] : Value(nullptr);
        });
      if (name == "items")
        return method(recv, name,
                      [](Interpreter& in, const Value& o, Args&) { return in.items(o); });
      if (name == "keys")
        return method(recv, name, [](Interpreter&, const Value& o, Args&) {
          Array out;
          for (const auto& [k, v] : o.as_object().entries()) out.emplace_back(k);
          return Value(std::move(out));
        });
      if (name == "values")
        return method(recv, name, [](Interpreter&, const Value& o, Args&) {
          Array out;
          for (const auto& [k, v] : o.as_object().entries()) out.push_back(v);
          return Value(std::move(out));
        });
      if (name == "dictsort")
        return method(recv, name,
                      [](Interpreter& in, const Value& o, Args& a) { return in.dictsort(o, a); });
      return Value();
    }
    return Value();
  }

  Value items(const Value& o) {
    Array out;
    for (const auto& [k, v] : o.as_object().entries()) out.push_back(Value(Array{Value(k), v}));
    charge(out.size() / 64);
    return Value(std::move(out));
  }

  Value dictsort(const Value& o, const Args& a) {
    const Value* cs = a.pos.size() > 0 ? &a.pos[0] : a.keyword("case_sensitive");
    const Value* by = a.pos.size() > 1 ? &a.pos[1] : a.keyword("by");
    const Value* rev = a.pos.size() > 2 ? &a.pos[2] : a.keyword("reverse");
    const bool case_sensitive =
        cs ? (cs->kind() == Kind::boolean ? cs->as_bool()
                                          : (fail("case_sensitive must be a boolean"), false))
           : false;
    std::string by_s = "key";
    if (by) {
      if (!by->is_string()) fail("by must be a string");
      by_s = by->as_string();
      if (by_s != "key" && by_s != "value") fail("by must be either 'key' or 'value'");
    }
    const bool reverse =
        rev ? (rev->kind() == Kind::boolean ? rev->as_bool()
                                            : (fail("reverse must be a boolean"), false))
            : false;
    Array pairs = items(o).as_array();
    const std::size_t idx = by_s == "key" ? 0 : 1;
    std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
      const int r = compare_values(x.as_array()[idx], y.as_array()[idx], case_sensitive);
      return reverse ? r > 0 : r < 0;
    });
    return Value(std::move(pairs));
  }

  Value string_builtin(const Value& recv, const std::string& name) {
    if (name == "length") return Value(static_cast<long long>(utf16_length(recv.as_string())));
    if (name == "upper")
      return method(recv, name,
                    [](Interpreter&, const Value& s, Args&) { return map_case(s, to_upper); });
    if (name == "lower")
      return method(recv, name,
                    [](Interpreter&, const Value& s, Args&) { return map_case(s, to_lower); });
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const bool l = name != "rstrip", r = name != "lstrip";
      // As in @huggingface/jinja, an argument (characters to strip) is ignored.
      return method(recv, name, [l, r](Interpreter&, const Value& s, Args&) {
        auto [b, e] = trim_bounds(s.as_string(), l, r);
        return substr(s, b, e);
      });
    }
    if (name == "title")
      return method(recv, name, [](Interpreter&, const Value& s, Args&) { return title_case(s); });
    if (name == "capitalize")
      return method(recv, name, [](Interpreter&, const Value& s, Args&) {
        const std::string& t = s.as_string();
        if (t.empty()) return s;
        std::size_t i = 0;
        const char32_t c = detail::next_cp(t, i);
        std::string out;
        detail::append_utf8(out, to_upper(c));
        if (out.size() != i) return str(out + t.substr(i), has_user(s));
        out += t.substr(i);
        return Value::from_string_data(
            std::make_shared<const StringData>(StringData{std::move(out), s.string_data()->user}));
      });
    if (name == "startswith" || name == "endswith") {
      const bool starts = name == "startswith";
      return method(recv, name, [starts, name](Interpreter&, const Value& s, Args& a) {
        if (a.pos.empty()) fail(name + "() requires at least one argument");
        const std::string& t = s.as_string();
        auto test = [&](const std::string& p) {
          if (p.size() > t.size()) return false;
          return starts ? t.compare(0, p.size(), p) == 0
                        : t.compare(t.size() - p.size(), p.size(), p) == 0;
        };
        const Value& p = a.pos[0];
        if (p.is_string()) return Value(test(p.as_string()));
        if (p.is_array()) {
          for (const auto& item : p.as_array()) {
            if (!item.is_string()) fail(name + "() tuple elements must be strings");
            if (test(item.as_string())) return Value(true);
          }
          return Value(false);
        }
        fail(name + "() argument must be a string or tuple of strings");
      });
    }
    if (name == "split")
      return method(recv, name,
                    [](Interpreter& in, const Value& s, Args& a) { return in.split(s, a); });
    if (name == "replace")
      return method(recv, name,
                    [](Interpreter& in, const Value& s, Args& a) { return in.replace(s, a); });
    return Value();
  }

  static Value title_case(const Value& s) {
    // JavaScript's value.replace(/\b\w/g, upper): ASCII word characters only.
    std::string t = s.as_string();
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (!is_ascii_word(t[i])) continue;
      if (i > 0 && is_ascii_word(t[i - 1])) continue;
      if (t[i] >= 'a' && t[i] <= 'z') t[i] = static_cast<char>(t[i] - 32);
    }
    return Value::from_string_data(
        std::make_shared<const StringData>(StringData{std::move(t), s.string_data()->user}));
  }

  Value split(const Value& s, const Args& a) {
    const Value sep = a.pos.size() > 0 ? a.pos[0] : Value(nullptr);
    if (!sep.is_string() && !sep.is_none()) fail("sep argument must be a string or null");
    const Value maxsplit_v = a.pos.size() > 1 ? a.pos[1] : Value(-1);
    if (maxsplit_v.kind() != Kind::integer) fail("maxsplit argument must be a number");
    const long long maxsplit = maxsplit_v.as_int();
    const std::string& t = s.as_string();
    Array out;
    if (sep.is_none()) {
      std::size_t i = trim_bounds(t, true, false).first;
      while (i < t.size()) {
        std::size_t e = i;
        while (e < t.size()) {
          std::size_t k = e;
          if (detail::is_js_space(detail::next_cp(t, k))) break;
          e = k;
        }
        if (maxsplit >= 0 && static_cast<long long>(out.size()) >= maxsplit) {
          out.push_back(substr(s, i, t.size()));
          break;
        }
        out.push_back(substr(s, i, e));
        i = e;
        while (i < t.size()) {
          std::size_t k = i;
          if (!detail::is_js_space(detail::next_cp(t, k))) break;
          i = k;
        }
      }
    } else {
      const std::string& d = sep.as_string();
      if (d.empty()) fail("empty separator");
      std::size_t b = 0;
      while (true) {
        if (maxsplit >= 0 && static_cast<long long>(out.size()) >= maxsplit) {
          out.push_back(substr(s, b, t.size()));
          break;
        }
        const std::size_t f = t.find(d, b);
        if (f == std::string::npos) {
          out.push_back(substr(s, b, t.size()));
          break;
        }
        out.push_back(substr(s, b, f));
        b = f + d.size();
      }
    }
    charge(out.size() / 16 + t.size() / 64);
    return Value(std::move(out));
  }

  Value replace(const Value& s, const Args& a) {
    if (a.pos.size() < 2) fail("replace() requires at least two arguments");
    const Value &from = a.pos[0], &to = a.pos[1];
    if (!from.is_string() || !to.is_string()) fail("replace() arguments must be strings");
    Value count = a.pos.size() > 2 ? a.pos[2] : Value(nullptr);
    if (const Value* c = a.keyword("count"); c && a.pos.size() <= 2) count = *c;
    if (count.kind() != Kind::integer && !count.is_none())
      fail("replace() count argument must be a number or null");
    long long remaining = count.is_none() || count.as_int() < 0 ? -1 : count.as_int();
    if (remaining == 0) return s;
    const std::string& t = s.as_string();
    const std::string& f = from.as_string();
    const std::string& r = to.as_string();
    std::string out;
    if (f.empty()) {
      // Inserted before every code point and at the end.
      std::size_t i = 0;
      while (i < t.size() && remaining != 0) {
        out += r;
        const std::size_t b = i;
        detail::next_cp(t, i);
        out.append(t, b, i - b);
        if (remaining > 0) --remaining;
        check_size(out.size());
      }
      out.append(t, i, std::string::npos);
      if (i >= t.size() && remaining != 0) out += r;
    } else {
      std::size_t b = 0;
      while (remaining != 0) {
        const std::size_t p = t.find(f, b);
        if (p == std::string::npos) break;
        out.append(t, b, p - b);
        out += r;
        b = p + f.size();
        if (remaining > 0) --remaining;
        check_size(out.size());
      }
      out.append(t, b, std::string::npos);
    }
    check_size(out.size());
    return str(std::move(out), has_user(s) || has_user(to));
  }

  // ---- tests ----
  bool run_test(const std::string& name, const Value& v, const Value* arg) {
    if (name == "boolean") return v.kind() == Kind::boolean;
    if (name == "callable") return v.kind() == Kind::function;
    if (name == "odd" || name == "even") {
      if (v.kind() != Kind::integer) fail("cannot " + name + " on " + type_name(v));
      return (v.as_int() % 2 != 0) == (name == "odd");
    }
    if (name == "false") return v.kind() == Kind::boolean && !v.as_bool();
    if (name == "true") return v.kind() == Kind::boolean && v.as_bool();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return is_number(v);
    if (name == "integer") return v.kind() == Kind::integer;
    if (name == "iterable") return (v.is_array() && !v.is_tuple()) || v.is_string();
    if (name == "mapping") return v.is_object();
    if (name == "sequence") return v.is_array() || v.is_object() || v.is_string();
    if (name == "lower") return v.is_string() && map_case(v, to_lower).as_string() == v.as_string();
    if (name == "upper") return v.is_string() && map_case(v, to_upper).as_string() == v.as_string();
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "equalto" || name == "eq") return strict_eq(v, arg ? *arg : Value());
    fail("Unknown test: " + name);
  }

  // ---- filters ----
  Value apply_filter(const Value& operand, const Node& f, const std::shared_ptr<Scope>& scope) {
    if (f.kind == NodeKind::Identifier) return filter_plain(operand, f.str);
    if (f.kind != NodeKind::Call || f.x->kind != NodeKind::Identifier) fail("Unknown filter");
    return filter_call(operand, f.x->str, f.a, scope);
  }

  Value tojson(const Value& v, const detail::JsonOptions& o) {
    bool user = false;
    std::string j = detail::to_json(v, o, true, &user, limit());
    check_size(j.size());
    return str(std::move(j), user);
  }

  Value join(const Value& operand, const std::string& sep) {
    Text t;
    if (operand.is_string()) {
      auto starts = cp_starts(operand.as_string());
      starts.push_back(operand.as_string().size());
      for (std::size_t i = 0; i + 1 < starts.size(); ++i) {
        if (i > 0) t.append(std::string_view(sep));
        t.append_str(substr(operand, starts[i], starts[i + 1]));
      }
    } else {
      bool first = true;
      for (const auto& x : operand.as_array()) {
        if (!first) t.append(std::string_view(sep));
        first = false;
        // Array.join of the values underneath: null and undefined are
        // empty, the others as `~` makes them (1.0 is "1").
        if (x.is_none() || x.is_undefined()) continue;
        append_operand(t, x);
        check_size(t.s.size());
      }
    }
    check_size(t.s.size());
    return std::move(t).value();
  }

  Value filter_plain(const Value& operand, const std::string& name) {
    if (name == "safe") return operand;
    if (name == "tojson") return tojson(operand, {});
    if (operand.is_array()) {
      const Array& a = operand.as_array();
      if (name == "list") return operand;
      // Of an empty list @huggingface/jinja fails (a JavaScript TypeError on
      // the undefined it returns) where Python's Jinja gives undefined.
      if ((name == "first" || name == "last") && a.empty())
        fail("Cannot take the " + name + " element of an empty list");
      if (name == "first") return a.front();
      if (name == "last") return a.back();
      if (name == "length") return Value(static_cast<long long>(a.size()));
      if (name == "reverse") return Value(Array(a.rbegin(), a.rend()));
      if (name == "sort") {
        Array s = a;
        std::stable_sort(s.begin(), s.end(), [](const Value& x, const Value& y) {
          return compare_values(x, y, false) < 0;
        });
        return Value(std::move(s));
      }
      if (name == "join") return join(operand, "");
      if (name == "string") {
        bool user = false;
        std::string j = detail::to_json(operand, {}, false, &user, limit());
        return str(std::move(j), user);
      }
      if (name == "unique") {
        Array out;
        for (const auto& x : a) {
          bool seen = false;
          for (const auto& y : out)
            if (strict_eq(x, y)) seen = true;
          if (!seen) out.push_back(x);
        }
        return Value(std::move(out));
      }
      fail("Unknown ArrayValue filter: " + name);
    }
    if (operand.is_string()) {
      if (name == "length") return Value(static_cast<long long>(utf16_length(operand.as_string())));
      if (name == "upper") return map_case(operand, to_upper);
      if (name == "lower") return map_case(operand, to_lower);
      if (name == "title") return title_case(operand);
      if (name == "capitalize") {
        Args none;
        return string_builtin(operand, "capitalize").callable()->fn(*this, none, nullptr);
      }
      if (name == "trim") {
        auto [b, e] = trim_bounds(operand.as_string(), true, true);
        return substr(operand, b, e);
      }
      if (name == "indent") return indent(operand, "    ", false, false);
      if (name == "join" || name == "string") return operand;
      if (name == "int") return parse_int(operand.as_string()).value_or(Value(0));
      if (name == "float") return parse_float(operand.as_string()).value_or(Value(0.0));
      fail("Unknown StringValue filter: " + name);
    }
    if (is_number(operand)) {
      if (name == "abs")
        return operand.kind() == Kind::integer
                   ? Value(static_cast<long long>(std::llabs(operand.as_int())))
                   : Value(std::fabs(operand.as_double()));
      if (name == "int")
        return operand.kind() == Kind::integer
                   ? operand
                   : Value(static_cast<long long>(std::trunc(operand.as_double())));
      if (name == "float") return Value(operand.as_double());
      if (name == "string") return to_display(operand);
      fail("Unknown NumericValue filter: " + name);
    }
    if (operand.is_object()) {
      if (name == "items") return items(operand);
      if (name == "length") return Value(static_cast<long long>(operand.as_object().size()));
      const Value b = builtin(operand, name);
      if (b.kind() == Kind::function) {
        Args none;
        return b.callable()->fn(*this, none, nullptr);
      }
      fail("Unknown ObjectValue filter: " + name);
    }
    if (operand.kind() == Kind::boolean) {
      if (name == "bool") return operand;
      if (name == "int") return Value(operand.as_bool() ? 1 : 0);
      if (name == "float") return Value(operand.as_bool() ? 1.0 : 0.0);
      if (name == "string") return Value(operand.as_bool() ? "true" : "false");
      fail("Unknown BooleanValue filter: " + name);
    }
    fail("Cannot apply filter \"" + name + "\" to type: " + type_name(operand));
  }

  // parseInt(s, 10) / parseFloat(s): a leading number, or nothing.
  static std::optional<Value> parse_int(const std::string& s) {
    auto [b, e] = trim_bounds(s, true, false);
    std::size_t i = b;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    const std::size_t d = i;
    long long v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (__builtin_mul_overflow(v, 10LL, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
        fail("int: number out of range");
      ++i;
    }
    if (i == d) return std::nullopt;
    return Value(neg ? -v : v);
  }
  static std::optional<Value> parse_float(const std::string& s) {
    auto [b, e] = trim_bounds(s, true, false);
    const std::string t = s.substr(b);
    if (t.rfind("Infinity", 0) == 0 || t.rfind("+Infinity", 0) == 0) return Value(INFINITY);
    if (t.rfind("-Infinity", 0) == 0) return Value(-INFINITY);
    // The longest prefix that is a decimal number.
    std::size_t i = 0;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    std::size_t digits = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i, ++digits;
    if (i < t.size() && t[i] == '.') {
      ++i;
      while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i, ++digits;
    }
    if (digits == 0) return std::nullopt;
    if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
      std::size_t k = i + 1;
      if (k < t.size() && (t[k] == '+' || t[k] == '-')) ++k;
      if (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) {
        while (k < t.size() && std::isdigit(static_cast<unsigned char>(t[k]))) ++k;
        i = k;
      }
    }
    return Value(std::strtod(t.substr(0, i).c_str(), nullptr));
  }

  Value indent(const Value& s, const std::string& ind, bool first, bool blank) {
    const std::string& t = s.as_string();
    std::string out;
    std::size_t b = 0, line = 0;
    while (true) {
      const std::size_t nl = t.find('\n', b);
      const std::size_t e = nl == std::string::npos ? t.size() : nl;
      if (line > 0) out.push_back('\n');
      if (!((!first && line == 0) || (!blank && e == b))) out += ind;
      out.append(t, b, e - b);
      check_size(out.size());
      if (nl == std::string::npos) break;
      b = nl + 1;
      ++line;
    }
    return str(std::move(out), has_user(s));
  }

  static const Value* arg_at(const Args& a, std::size_t i, const char* kw) {
    if (a.pos.size() > i) return &a.pos[i];
    return a.keyword(kw);
  }

  // Attribute paths of sort/map ("a.b", "items.0").
  static Value attribute_value(const Value& item, const std::string& path) {
    Value v = item;
    std::size_t b = 0;
    while (true) {
      const std::size_t d = path.find('.', b);
      const std::string part = path.substr(b, d == std::string::npos ? std::string::npos : d - b);
      if (v.is_object() || v.kind() == Kind::ns) {
        const Object& o = v.is_object() ? v.as_object() : v.namespace_data()->members;
        const Value* x = o.find(part);
        v = x ? *x : Value();
      } else if (v.is_array()) {
        char* end = nullptr;
        const long idx = std::strtol(part.c_str(), &end, 10);
        if (end == part.c_str() || idx < 0 || static_cast<std::size_t>(idx) >= v.as_array().size())
          return Value();
        v = v.as_array()[static_cast<std::size_t>(idx)];
      } else {
        return Value();
      }
      if (d == std::string::npos) break;
      b = d + 1;
    }
    return v;
  }

  Value filter_call(const Value& operand, const std::string& name, const NodeList& arg_nodes,
                    const std::shared_ptr<Scope>& scope) {
    if (name == "tojson") {
      const Args a = eval_args(arg_nodes, scope);
      detail::JsonOptions o;
      if (const Value* v = a.keyword("indent"); v && !v->is_none()) {
        if (v->kind() != Kind::integer) fail("If set, indent must be a number");
        if (v->as_int() < 0 || v->as_int() > 64) fail("tojson: indent must be between 0 and 64");
        o.indent = v->as_int();
      }
      if (const Value* v = a.keyword("ensure_ascii")) {
        if (v->kind() != Kind::boolean) fail("If set, ensure_ascii must be a boolean");
        o.ensure_ascii = v->as_bool();
      }
      if (const Value* v = a.keyword("sort_keys")) {
        if (v->kind() != Kind::boolean) fail("If set, sort_keys must be a boolean");
        o.sort_keys = v->as_bool();
      }
      if (const Value* v = a.keyword("separators"); v && !v->is_none()) {
        if (!v->is_array()) fail("If set, separators must be a tuple of two strings");
        const Array& s = v->as_array();
        if (s.size() != 2 || !s[0].is_string() || !s[1].is_string())
          fail("separators must be a tuple of two strings");
        o.separators = std::make_pair(s[0].as_string(), s[1].as_string());
      }
      return tojson(operand, o);
    }
    if (name == "join") {
      if (!operand.is_string() && !operand.is_array())
        fail("Cannot apply filter \"join\" to type: " + std::string(type_name(operand)));
      const Args a = eval_args(arg_nodes, scope);
      const Value* sep = arg_at(a, 0, "separator");
      if (sep && !sep->is_string()) fail("separator must be a string");
      return join(operand, sep ? sep->as_string() : "");
    }
    if (name == "int" || name == "float") {
      const Args a = eval_args(arg_nodes, scope);
      const Value* d = arg_at(a, 0, "default");
      const bool is_int = name == "int";
      const Value def = d ? *d : (is_int ? Value(0) : Value(0.0));
      if (operand.is_string()) {
        auto r = is_int ? parse_int(operand.as_string()) : parse_float(operand.as_string());
        return r ? *r : def;
      }
      if (is_number(operand))
        return is_int ? (operand.kind() == Kind::integer
                             ? operand
                             : Value(static_cast<long long>(std::trunc(operand.as_double()))))
                      : Value(operand.as_double());
      if (operand.kind() == Kind::boolean)
        return is_int ? Value(operand.as_bool() ? 1 : 0) : Value(operand.as_bool() ? 1.0 : 0.0);
      fail("Cannot apply filter \"" + name + "\" to type: " + type_name(operand));
    }
    if (name == "default") {
      const Args a = eval_args(arg_nodes, scope);
      const Value def = a.pos.size() > 0 ? a.pos[0] : Value("");
      const Value* bv = arg_at(a, 1, "boolean");
      if (bv && bv->kind() != Kind::boolean) fail("`default` filter flag must be a boolean");
      const bool boolean = bv && bv->as_bool();
      if (operand.is_undefined() || (boolean && !truthy(operand))) return def;
      return operand;
    }
    if (operand.is_array()) {
      const Array& arr = operand.as_array();
      if (name == "sort") {
        const Args a = eval_args(arg_nodes, scope);
        const Value* rev = arg_at(a, 0, "reverse");
        const Value* cs = arg_at(a, 1, "case_sensitive");
        const Value* attr = arg_at(a, 2, "attribute");
        if (rev && rev->kind() != Kind::boolean) fail("reverse must be a boolean");
        if (cs && cs->kind() != Kind::boolean) fail("case_sensitive must be a boolean");
        if (attr && !attr->is_string() && attr->kind() != Kind::integer && !attr->is_none())
          fail("attribute must be a string, integer, or null");
        const bool reverse = rev && rev->as_bool(), case_sensitive = cs && cs->as_bool();
        std::string path;
        const bool by_attr = attr && !attr->is_none();
        if (by_attr) path = attr->is_string() ? attr->as_string() : std::to_string(attr->as_int());
        Array s = arr;
        std::stable_sort(s.begin(), s.end(), [&](const Value& x, const Value& y) {
          const int r = compare_values(by_attr ? attribute_value(x, path) : x,
                                       by_attr ? attribute_value(y, path) : y, case_sensitive);
          return reverse ? r > 0 : r < 0;
        });
        return Value(std::move(s));
      }
      if (name == "selectattr" || name == "rejectattr") {
        const bool select = name == "selectattr";
        for (const auto& item : arr)
          if (!item.is_object() && item.kind() != Kind::ns)
            fail("`" + name + "` can only be applied to array of objects");
        for (const auto& an : arg_nodes)
          if (an->kind != NodeKind::StrLit) fail("arguments of `" + name + "` must be strings");
        if (arg_nodes.empty()) fail("`" + name + "` needs an attribute name");
        const std::string attr = arg_nodes[0]->str;
        const std::string test = arg_nodes.size() > 1 ? arg_nodes[1]->str : "";
        const Value value = arg_nodes.size() > 2 ? Value(arg_nodes[2]->str) : Value();
        Array out;
        for (const auto& item : arr) {
          const Object& o = item.is_object() ? item.as_object() : item.namespace_data()->members;
          const Value* x = o.find(attr);
          bool r = false;
          if (x) r = test.empty() ? truthy(*x) : run_test(test, *x, &value);
          if (r == select) out.push_back(item);
        }
        return Value(std::move(out));
      }
      if (name == "map") {
        const Args a = eval_args(arg_nodes, scope);
        const Value* attr = a.keyword("attribute");
        if (!attr) fail("`map` expressions without `attribute` set are not currently supported.");
        if (!attr->is_string()) fail("attribute must be a string");
        const Value* def = a.keyword("default");
        Array out;
        for (const auto& item : arr) {
          if (!item.is_object() && item.kind() != Kind::ns) fail("items in map must be an object");
          Value v = attribute_value(item, attr->as_string());
          out.push_back(v.is_undefined() && def ? *def : v);
        }
        return Value(std::move(out));
      }
      fail("Unknown ArrayValue filter: " + name);
    }
    if (operand.is_string()) {
      if (name == "indent") {
        const Args a = eval_args(arg_nodes, scope);
        const Value* w = arg_at(a, 0, "width");
        std::string ind = "    ";
        if (w) {
          if (w->kind() == Kind::integer) {
            if (w->as_int() > 1024) fail("indent: width too large");
            ind.assign(static_cast<std::size_t>(std::max<long long>(0, w->as_int())), ' ');
          } else if (w->is_string()) {
            ind = w->as_string();
          } else {
            fail("width must be an integer or a string");
          }
        }
        const Value* first = arg_at(a, 1, "first");
        const Value* blank = arg_at(a, 2, "blank");
        return indent(operand, ind, first && truthy(*first), blank && truthy(*blank));
      }
      if (name == "replace") {
        Args a = eval_args(arg_nodes, scope);
        return replace(operand, a);
      }
      fail("Unknown StringValue filter: " + name);
    }
    if (operand.is_object()) {
      const Value b = builtin(operand, name);
      if (b.kind() == Kind::function) {
        Args a = eval_args(arg_nodes, scope);
        return b.callable()->fn(*this, a, scope);
      }
      fail("Unknown ObjectValue filter: " + name);
    }
    fail("Cannot apply filter \"" + name + "\" to type: " + type_name(operand));
  }

  // ---- macros and call blocks ----
  void bind_macro_args(const std::string& display, const Node& decl, const NodeList& params,
                       Args& args, const std::shared_ptr<Scope>& scope) {
    std::vector<std::pair<std::string, const Node*>> pending;
    auto kw = args.kw;
    for (std::size_t i = 0; i < params.size(); ++i) {
      const Node& p = *params[i];
      const std::string& name = p.str;
      const Node* def = p.kind == NodeKind::KwArg ? p.x.get() : nullptr;
      std::optional<Value> v;
      if (i < args.pos.size()) v = args.pos[i];
      if (!v) {
        for (auto it = kw.begin(); it != kw.end(); ++it)
          if (it->first == name) {
            v = it->second;
            kw.erase(it);
            break;
          }
      }
      if (!v && def) pending.emplace_back(name, def);
      scope->set(name, v ? *v : Value());
    }
    if (decl.uses_kwargs) {
      Object o;
      for (auto& [k, x] : kw) o.set(k, x);
      scope->set("kwargs", Value(std::move(o)));
    } else if (!kw.empty()) {
      fail("macro " + display + " takes no keyword argument '" + kw.front().first + "'");
    }
    if (decl.uses_varargs) {
      Array rest;
      for (std::size_t i = params.size(); i < args.pos.size(); ++i) rest.push_back(args.pos[i]);
      scope->set("varargs", Value(std::move(rest)));
    } else if (args.pos.size() > params.size()) {
      fail("macro " + display + " takes not more than " + std::to_string(params.size()) +
           " argument(s)");
    }
    for (const auto& [name, def] : pending) scope->set(name, eval(*def, scope));
  }

  void define_macro(const Node& n, const std::shared_ptr<Scope>& env) {
    auto c = std::make_shared<Callable>();
    c->name = n.str;
    const Node* node = &n;
    // The macro keeps its defining scope alive (late binding, as in Jinja).
    std::weak_ptr<Scope> weak = env;
    c->fn = [node, weak](Interpreter& in, Args& args,
                         const std::shared_ptr<Scope>& call_site) -> Value {
      auto def_env = weak.lock();
      if (!def_env) fail("macro '" + node->str + "' called after its scope ended");
      DepthGuard g(in);
      std::shared_ptr<Scope> parent = def_env;
      if (node->uses_caller) {
        Value caller;
        if (call_site && call_site->call_block)
          if (const Value* v = call_site->local("caller")) caller = *v;
        parent = std::make_shared<Scope>(def_env);
        parent->set("caller", caller);
      }
      auto scope = std::make_shared<Scope>(parent);
      in.bind_macro_args("'" + node->str + "'", *node, node->a, args, scope);
      Text t;
      in.render_block(node->body, scope, t);
      return std::move(t).value();
    };
    env->set(n.str, Value::from_callable(std::move(c)));
  }

  Value eval_call_block(const Node& n, const std::shared_ptr<Scope>& env) {
    auto c = std::make_shared<Callable>();
    c->name = "caller";
    const Node* node = &n;
    std::weak_ptr<Scope> weak = env;
    c->fn = [node, weak](Interpreter& in, Args& args, const std::shared_ptr<Scope>&) -> Value {
      auto def_env = weak.lock();
      if (!def_env) fail("caller() called after its call block ended");
      DepthGuard g(in);
      auto scope = std::make_shared<Scope>(def_env);
      in.bind_macro_args("None", *node, node->a, args, scope);
      Text t;
      in.render_block(node->body, scope, t);
      return std::move(t).value();
    };
    const Node& call = *n.x;
    Args args = eval_args(call.a, env);
    const Value fn = eval(*call.x, env);
    if (fn.kind() != Kind::function)
      fail(std::string("Cannot call something that is not a function: got ") + type_name(fn));
    auto site = std::make_shared<Scope>(env);
    site->call_block = true;
    site->set("caller", Value::from_callable(std::move(c)));
    return fn.callable()->fn(*this, args, site);
  }

  // ---- globals ----
  Value global_fn(std::string name, std::function<Value(Interpreter&, Args&)> f) {
    auto c = std::make_shared<Callable>();
    c->name = name;
    c->fn = [f = std::move(f)](Interpreter& in, Args& a, const std::shared_ptr<Scope>&) {
      return f(in, a);
    };
    return Value::from_callable(std::move(c));
  }

  void setup_globals(Scope& g) {
    g.set("false", Value(false));
    g.set("true", Value(true));
    g.set("none", Value(nullptr));
    g.set("False", Value(false));
    g.set("True", Value(true));
    g.set("None", Value(nullptr));
    g.set("raise_exception", global_fn("raise_exception", [](Interpreter& in, Args& a) -> Value {
            std::string msg = a.pos.empty() ? "undefined" : in.to_display(a.pos[0]).as_string();
            throw Failure{std::move(msg), true};
          }));
    g.set("range", global_fn("range", [](Interpreter& in, Args& a) -> Value {
            if (a.pos.empty()) fail("range expected at least 1 argument");
            for (const auto& v : a.pos)
              if (v.kind() != Kind::integer) fail("range() arguments must be integers");
            long long start = 0, stop, step = 1;
            if (a.pos.size() == 1) {
              stop = a.pos[0].as_int();
            } else {
              start = a.pos[0].as_int();
              stop = a.pos[1].as_int();
              if (a.pos.size() > 2) step = a.pos[2].as_int();
            }
            if (step == 0) fail("range() step must not be zero");
            Array out;
            for (long long i = start; step > 0 ? i < stop : i > stop; i += step) {
              if (out.size() >= in.opt_.limits.max_loop_iterations)
                fail("range() would have more than " +
                     std::to_string(in.opt_.limits.max_loop_iterations) +
                     " elements (the loop limit)");
              out.push_back(Value(i));
            }
            in.charge(out.size() / 64);
            return Value(std::move(out));
          }));
    g.set("strftime_now", global_fn("strftime_now", [](Interpreter& in, Args& a) -> Value {
            if (a.pos.empty() || !a.pos[0].is_string())
              fail("strftime_now() expects a format string");
            const std::tm tm = in.opt_.now ? *in.opt_.now : local_now();
            return Value(strftime_js(tm, a.pos[0].as_string()));
          }));
    g.set("namespace", global_fn("namespace", [](Interpreter&, Args& a) -> Value {
            if (a.pos.size() > 1)
              fail("namespace expected at most 1 argument, got " + std::to_string(a.pos.size()));
            auto ns = std::make_shared<detail::NamespaceData>();
            if (a.pos.size() == 1) {
              const Value& src = a.pos[0];
              if (src.is_object()) {
                for (const auto& [k, v] : src.as_object().entries()) ns->members.set(k, v);
              } else if (src.is_array()) {
                for (const auto& pair : src.as_array()) {
                  if (!pair.is_array() || pair.as_array().size() != 2)
                    fail("namespace expected an object or an iterable of [key, value] pairs");
                  if (!pair.as_array()[0].is_string()) fail("namespace keys must be strings");
                  ns->members.set(pair.as_array()[0].as_string(), pair.as_array()[1]);
                }
              } else {
                fail(std::string("'") + type_name(src) + "' object is not iterable");
              }
            }
            for (const auto& [k, v] : a.kw) ns->members.set(k, v);
            return Value::from_namespace(std::move(ns));
          }));
  }

 private:
  const detail::Program& program_;
  const RenderOptions& opt_;
  std::size_t work_ = 0;
  std::size_t iterations_ = 0;
  std::size_t depth_ = 0;
};

MarkedText Template::render_marked(const Value& context, const RenderOptions& options) const {
  Interpreter in(*program_, options);
  Text t;
  try {
    t = in.run(context);
  } catch (const BreakSignal&) {
    throw TemplateError(program_->origin, 1, 1, "'break' outside a loop");
  } catch (const ContinueSignal&) {
    throw TemplateError(program_->origin, 1, 1, "'continue' outside a loop");
  }
  return MarkedText{std::move(t.s), std::move(t.user)};
}

std::string Template::render(const Value& context, const RenderOptions& options) const {
  return render_marked(context, options).text;
}

}  // namespace assistgen::jinja
