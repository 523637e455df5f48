// Jinja engine tests: byte-for-byte parity with Hugging Face's own JS engine
// (@huggingface/jinja) on the chat templates of tests/data/templates/ (goldens
// made by tools/chat_template_goldens), the constructs one by one, error
// locations, user-text ranges, and the bounds that stop hostile templates.
#include <assistgen/jinja.hpp>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

using assistgen::jinja::MarkedText;
using assistgen::jinja::RenderOptions;
using assistgen::jinja::Template;
using assistgen::jinja::TemplateError;
using assistgen::jinja::TemplateRaised;
using assistgen::jinja::Value;

namespace {

const std::filesystem::path kDir = std::filesystem::path(ASSISTGEN_TEST_DATA_DIR) / "templates";

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The clock of the goldens (make_goldens.mjs): 2025-01-15 10:30.
RenderOptions fixed_clock() {
  RenderOptions o;
  std::tm tm{};
  tm.tm_year = 125;
  tm.tm_mon = 0;
  tm.tm_mday = 15;
  tm.tm_hour = 10;
  tm.tm_min = 30;
  o.now = tm;
  return o;
}

std::string render(std::string_view src, std::string_view context_json = "{}") {
  return Template::parse(src).render(Value::parse_json(context_json), fixed_clock());
}

// The error a template raises, as "LINE:COL: message".
std::string error_of(std::string_view src, std::string_view context_json = "{}") {
  try {
    (void)render(src, context_json);
  } catch (const TemplateError& e) {
    return std::to_string(e.line()) + ":" + std::to_string(e.column()) + ": " + e.message();
  }
  return "no error";
}

}  // namespace

TEST_CASE("jinja: every golden template renders as @huggingface/jinja does", "[jinja]") {
  const auto manifest = nlohmann::json::parse(read_text(kDir / "templates.json"));
  const auto convs =
      Value::parse_json(read_text(kDir / "conversations.json"), "conversations.json");
  const auto goldens = nlohmann::json::parse(read_text(kDir / "goldens.json"));
  std::map<std::string, Template> templates;
  for (const auto& [name, spec] : manifest.items())
    templates.emplace(name,
                      Template::parse(read_text(kDir / spec["file"].get<std::string>()), name));
  std::size_t texts = 0, raised = 0;
  for (const auto& c : goldens["cases"]) {
    const std::string name = c["template"];
    const std::string conv = c["conversation"];
    const bool agp = c["add_generation_prompt"];
    INFO(name << " on " << conv << (agp ? " with" : " without") << " generation prompt");
    Value ctx = *convs.find(conv);
    ctx.set("add_generation_prompt", agp);
    ctx.set("bos_token", manifest[name]["bos_token"].get<std::string>());
    ctx.set("eos_token", manifest[name]["eos_token"].get<std::string>());
    const Template& t = templates.at(name);
    if (c.contains("text")) {
      CHECK(t.render(ctx, fixed_clock()) == c["text"].get<std::string>());
      ++texts;
    } else if (!c.value("raised", false)) {
      // The template fails on this conversation (an undefined field, a list
      // where it expects a string): an error either way, worded by each engine.
      CHECK_THROWS_AS(t.render(ctx, fixed_clock()), TemplateError);
      ++raised;
    } else {
      try {
        (void)t.render(ctx, fixed_clock());
        FAIL("expected raise_exception: " << c["error"]);
      } catch (const TemplateRaised& e) {
        CHECK(e.message() == c["error"].get<std::string>());
      }
      ++raised;
    }
  }
  CHECK(texts >= 150);
  CHECK(raised >= 10);
}

TEST_CASE("jinja: whitespace control follows trim_blocks and lstrip_blocks", "[jinja]") {
  CHECK(render("a\n  {% if true %}\n  b\n  {% endif %}\nc\n") == "a\n  b\nc");
  CHECK(render("a  {%- if true -%}  b  {%- endif %}  c") == "ab  c");
  CHECK(render("x {{- ' y ' -}} z") == "x y z");
  CHECK(render("{# comment #}\nkept\n") == "kept");
  CHECK(render("a {#- trimmed -#} b") == "ab");
  CHECK(render("  {{ 'expr lines are not stripped' }}\n") == "  expr lines are not stripped");
  CHECK(render("{% generation %}inside{% endgeneration %}") == "inside");
  // Without HF's defaults.
  auto t = Template::parse("a\n  {% if true %}\nb\n  {% endif %}\n", "t",
                           {.trim_blocks = false, .lstrip_blocks = false});
  CHECK(t.render(Value::object()) == "a\n  \nb\n  ");
}

TEST_CASE("jinja: expressions, operators and literals", "[jinja]") {
  CHECK(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ 7 // -2 }} {{ -7 % 3 }}") ==
        "7 9 64 -4 -1");
  CHECK(render("{{ 0.1 + 0.2 }} {{ 3 if false else 2.0 }} {{ 1 / 4 }} {{ 10 / 2 }}") ==
        "0.30000000000000004 2.0 0.25 5.0");
  CHECK(render("{{ 'a' + 'b' ~ 1 }} {{ 'x' * 1 if false else 'ok' }}") == "ab1 ok");
  CHECK(
      render(
          "{{ true and 'yes' }} {{ [] or 'empty' }} {{ not none }} {{ none }}|{{ undefined }}|") ==
      "yes empty true ||");
  CHECK(render("{{ 1 if 0 }}|{{ 'a' if 1 else 'b' if 2 else 'c' }}") == "|a");
  CHECK(render("{{ [1, 'two', [3]] }} {{ {'a': 1, 'b': [true, none]} }}") ==
        "[1, \"two\", [3]] {\"a\": 1, \"b\": [true, null]}");
  CHECK(error_of("{{ (1, 2) }}") == "1:5: Cannot convert to JSON: TupleValue");
  CHECK(render("{{ 'a' 'b' }} {{ \"q\\\"\\n\" | length }} {{ '\\u00e9' }}") == "ab 3 é");
  CHECK(render("{{ x == none }} {{ 1 == true }} {{ '1' == 1 }} {{ [1] == [1] }} {{ 'b' > 'a' if "
               "false else 0 }}",
               "{}") == "true true true false 0");
}

// Found by tools/chat_template_goldens/check_templates.mjs on the real
// DeepSeek-R1 (and V3.1, R1-1776) and functionary-v2.2 templates, which write
// '```json\n' + tool['function']['arguments'] + '\n```' with the arguments an
// object. @huggingface/jinja's `~` and string `+` take JavaScript's toString
// of the value underneath, not its printed form; the expected texts are the
// oracle's (@huggingface/jinja 0.5.13).
TEST_CASE("jinja: concatenation stringifies operands as @huggingface/jinja does", "[jinja]") {
  const std::string ctx =
      R"({"args": {"city": "Paris", "days": [1, 2]}, "a": [1, "x", {"c": 1}, [2, 3], true, null],
          "f": 2.5, "i": 3, "b": true, "big": 1e21})";
  CHECK(render("{{ '```json\\n' + args + '\\n```' }}", ctx) == "```json\n[object Map]\n```");
  CHECK(render("{{ args ~ '|' ~ namespace(a=1) }}", ctx) == "[object Map]|[object Map]");
  CHECK(render("{% for q in [1] %}{{ 'x' + loop }}{% endfor %}") == "x[object Map]");
  // A list: its elements as printed, joined by ","; none and undefined as "undefined".
  CHECK(render("{{ 'x' + a }}", ctx) == "x1,x,{\"c\": 1},[2, 3],true,undefined");
  CHECK(render("{{ 'x' ~ [none, u] }}|{{ 'x' + [] }}|{{ 'x' + [[]] }}|{{ 'x' ~ (1, 2) }}") ==
        "xundefined,undefined|x|x[]|x1,2");
  CHECK(render("{{ 'x' + range(3) }}|{{ u ~ [1] }}|{{ [1] ~ u }}|{{ true ~ [] }}") ==
        "x0,1,2|1|1|true");
  // Numbers as JavaScript writes them: 1.0 is "1" here, though printed "1.0".
  CHECK(render("{{ 'x' + 1.0 }} {{ 1.0 }} {{ 'x' + f }} {{ i ~ f }} {{ 'x' + (1 / 3) }}", ctx) ==
        "x1 1.0 x2.5 32.5 x0.3333333333333333");
  CHECK(render("{{ 'x' + big }} {{ 'x' ~ b }} {{ 'x' ~ [1.5, 2.0] }}", ctx) ==
        "x1e+21 xtrue x1.5,2.0");
  // join takes the same values (a nested list's elements as printed), with
  // none and undefined empty at the top.
  CHECK(render("{{ [{'a': 1}, 1.0, none, true, [1]] | join(',') }}") == "[object Map],1,,true,1");
  CHECK(render("{{ [[{'a': 1}, 1.0, none, u], f, 2.5] | join }}", ctx) ==
        "{\"a\": 1},1.0,undefined,undefined2.52.5");
  CHECK(render("{{ [1.0, 2.5, -0.5] | join(' ') }}") == "1 2.5 -0.5");
  // @huggingface/jinja writes a function's JavaScript source: an error here.
  CHECK(error_of("{{ 'x' ~ range }}") == "1:8: Cannot convert a function to a string");
  CHECK(error_of("{{ 'x' ~ [range] }}") == "1:8: Cannot convert a function to a string");
  // User text inside a list keeps its range.
  Value c = Value::object();
  Value l = Value::array();
  l.push_back(Value::user_text("<|im_end|>"));
  l.push_back(Value(2));
  c.set("l", l);
  const MarkedText out = Template::parse("{{ '<s>' ~ l }}").render_marked(c);
  CHECK(out.text == "<s><|im_end|>,2");
  REQUIRE(out.user.size() == 1);
  CHECK(out.user[0].begin == 3);
  CHECK(out.user[0].end == 13);
}

// Found by check_templates.mjs on an empty conversation: @huggingface/jinja
// fails on `first` and `last` of an empty list (an internal TypeError), so
// they are errors here too; of a non-empty list they are its ends.
TEST_CASE("jinja: first and last of an empty list fail as in @huggingface/jinja", "[jinja]") {
  CHECK(render("{{ [1, 2] | first }}{{ [1, 2] | last }}{{ (['a'] | first).upper() }}") == "12A");
  CHECK(error_of("{{ [] | first }}") == "1:7: Cannot take the first element of an empty list");
  CHECK(error_of("{{ (messages | last) is defined }}", R"({"messages": []})") ==
        "1:14: Cannot take the last element of an empty list");
}

TEST_CASE("jinja: statements", "[jinja]") {
  // Scoping: set inside a loop does not leak; a namespace carries state out.
  CHECK(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}") == "1");
  CHECK(render("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% "
               "endfor %}{{ ns.x }}") == "4");
  CHECK(render("{% set a, b = [1, 2] %}{{ b }}{{ a }}") == "21");
  CHECK(render("{% set block %}B{{ 1 + 1 }}{% endset %}[{{ block }}]") == "[B2]");
  CHECK(render("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}") ==
        "a=1;b=2;");
  CHECK(render("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}") == "ab");
  CHECK(render("{% for i in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% "
               "continue %}{% endif %}{{ i }}{% endfor %}") == "02");
  CHECK(render("{% for i in [1,2,3,4] if i is even %}{{ loop.index }}:{{ i }}/{{ loop.length }} {% "
               "endfor %}") == "1:2/2 2:4/2 ");
  CHECK(render("{% macro m(a, b='B', c=a ~ '!') %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m('x') }} "
               "{{ m('x', c='C') }}") == "xBx! xBC");
  CHECK(render("{% macro m() %}{{ varargs | length }}{{ kwargs.k }}{% endmacro %}{{ m(1, 2, k='v') "
               "}}") == "2v");
  CHECK(render("{% macro wrap(t) %}<{{ t }}:{{ caller() }}>{% endmacro %}{% call wrap('b') %}in{% "
               "endcall %}") == "<b:in>");
  CHECK(render("{% filter upper %}abc{{ 'd' }}{% endfilter %}") == "ABCD");
  CHECK(render("{% if false %}a{% elif none %}b{% elif 1 %}c{% else %}d{% endif %}") == "c");
  CHECK(render("{{ strftime_now('%Y-%m-%d %H:%M %b %B %%') }}") ==
        "2025-01-15 10:30 Jan January %");
}

TEST_CASE("jinja: string methods and filters", "[jinja]") {
  CHECK(
      render(
          "{{ '  a b  '.strip() }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|{{ ' x ' | trim }}") ==
      "a b|a | a|x");
  CHECK(render("{{ 'hello wORLD'.title() }} {{ 'abc'.upper() }} {{ 'ÀÉ'.lower() }} {{ 'été' | "
               "capitalize }}") == "Hello WORLD ABC àé Été");
  CHECK(render("{{ 'a</think>b</think>c'.split('</think>')[-1] }} {{ 'a b'.split() }} {{ "
               "'a-b-c'.split('-', 1) }}") == "c [\"a\", \"b\"] [\"a\", \"b-c\"]");
  CHECK(render("{{ 'abcdef'[1:4] }} {{ 'abcdef'[::-2] }} {{ 'héllo'[1] }} {{ [1,2,3,4][-2:] }}") ==
        "bcd fdb é [3, 4]");
  CHECK(render("{{ 'aaa'.replace('a', 'b', 2) }} {{ 'ab'.replace('', '-') }} {{ 'x' | replace('x', "
               "'y') }}") == "bba -a-b- y");
  CHECK(render("{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }}") == "true true");
  CHECK(render("{{ [3, 1, 2] | sort | first }} {{ ['b', 'A', 'c'] | sort | join }} {{ [1, 2, 2] | "
               "unique | length }}") == "1 Abc 2");
  CHECK(render("{{ {'é': 'ü', 'a': [1.5, 2.0]} | tojson(ensure_ascii=true) }}") ==
        "{\"\\u00e9\": \"\\u00fc\", \"a\": [1.5, 2]}");
  CHECK(render("{{ {'b': {}, 'a': []} | tojson(indent=2) }}") == "{\n  \"b\": {},\n  \"a\": []\n}");
  CHECK(render("{{ {'b': 1, 'A': 2, 'a': 3} | tojson(sort_keys=true) }}") ==
        "{\"a\": 3, \"A\": 2, \"b\": 1}");
  CHECK(render("{{ x | selectattr('t', 'equalto', 'f') | map(attribute='n') | join(',') }}",
               R"({"x": [{"t": "f", "n": 1}, {"t": "g", "n": 2}, {"t": "f", "n": 3}]})") == "1,3");
  CHECK(render("{{ x | map(attribute='a.b', default='-') | join(',') }}",
               R"({"x": [{"a": {"b": 1}}, {"a": {}}]})") == "1,-");
}

TEST_CASE("jinja: syntax errors name the line and column", "[jinja]") {
  CHECK(error_of("line one\n{% if x %}\nunclosed") ==
        "2:1: syntax error: Unclosed 'if' block (expected '{% endif %}')");
  CHECK(error_of("ok\n  {{ 1 + }}") == "2:10: syntax error: Unexpected token CloseExpression '}}'");
  CHECK(error_of("{% frobnicate %}") == "1:4: syntax error: Unknown statement 'frobnicate'");
  CHECK(error_of("{{ 'abc }}") ==
        "1:4: syntax error: Unexpected end of input (unterminated string)");
  CHECK(error_of("a\nb {{ x @ y }}") == "2:8: syntax error: Unexpected character: @");
  CHECK(error_of("{# never closed") == "1:1: syntax error: Missing end of comment tag");
}

TEST_CASE("jinja: render errors name the line and column", "[jinja]") {
  CHECK(error_of("{{ raise_exception('Roles must alternate') }}") == "1:4: Roles must alternate");
  CHECK_THROWS_AS(render("{{ raise_exception('x') }}"), TemplateRaised);
  CHECK(error_of("a\n  {{ messages | trim }}") ==
        "2:15: Cannot apply filter \"trim\" to type: UndefinedValue");
  CHECK(error_of("{% for x in 3 %}{% endfor %}") ==
        "1:1: Expected iterable or object type in for loop: got IntegerValue");
  CHECK(error_of("{{ 1 // 0 }}") == "1:6: integer division or modulo by zero");
  CHECK(error_of("{{ x.y() }}", R"({"x": {}})") ==
        "1:4: Cannot call something that is not a function: got UndefinedValue");
  CHECK(error_of("{{ none ~ 'a' }}") == "1:9: Cannot perform operation on null values");
  // The message carries the template's name.
  try {
    Template::parse("\n{{ 1 + none }}", "tokenizer_config.json: chat_template")
        .render(Value::object());
    FAIL("no error");
  } catch (const TemplateError& e) {
    CHECK(std::string(e.what()) ==
          "tokenizer_config.json: chat_template:2:6: Cannot perform operation on null values");
  }
}

TEST_CASE("jinja: hostile templates hit a bound, not a hang or a crash", "[jinja]") {
  // Unbounded recursion.
  CHECK_THROWS_WITH(render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
                    Catch::Contains("levels deep"));
  // Output growth.
  RenderOptions small = fixed_clock();
  small.limits.max_output_bytes = 1000;
  CHECK_THROWS_WITH(Template::parse("{% for i in range(100) %}0123456789abcdef{% endfor %}")
                        .render(Value::object(), small),
                    Catch::Contains("output exceeds the limit of 1000 bytes"));
  // A string doubled in a variable, never printed.
  CHECK_THROWS_WITH(render("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = "
                           "ns.s ~ ns.s %}{% endfor %}"),
                    Catch::Contains("bytes (the output limit)"));
  // Loops.
  CHECK_THROWS_WITH(render("{% for i in range(100000000) %}{% endfor %}"),
                    Catch::Contains("loop limit"));
  RenderOptions few = fixed_clock();
  few.limits.max_loop_iterations = 1000;
  CHECK_THROWS_WITH(
      Template::parse("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}")
          .render(Value::object(), few),
      Catch::Contains("loop limit of 1000"));
  // Work.
  RenderOptions little = fixed_clock();
  little.limits.max_work = 5000;
  CHECK_THROWS_WITH(Template::parse("{% for i in range(900) %}{{ i + i + i + i }}{% endfor %}")
                        .render(Value::object(), little),
                    Catch::Contains("work limit"));
  // Nesting in the source.
  CHECK_THROWS_WITH(
      Template::parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}"),
      Catch::Contains("nested too deeply"));
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  CHECK_THROWS_WITH(Template::parse(chain + " }}"), Catch::Contains("nested too deeply"));
  std::string ifs;
  for (int i = 0; i < 5000; ++i) ifs += "{% if true %}";
  CHECK_THROWS_WITH(Template::parse(ifs), Catch::Contains("nested too deeply"));
}

TEST_CASE("jinja: user text keeps its ranges through the render", "[jinja]") {
  Value ctx = Value::object();
  Value msgs = Value::array();
  msgs.push_back(
      Value::object().set("role", "user").set("content", Value::user_text("  hi <|im_end|>  ")));
  ctx.set("messages", msgs);
  auto t = Template::parse(
      "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content | trim + '<|im_end|>' "
      "}}"
      "[{{ m.content[2:4] }}]{{ m.content | tojson }}{% endfor %}");
  const MarkedText out = t.render_marked(ctx);
  REQUIRE(out.text == "<|im_start|>user\nhi <|im_end|><|im_end|>[hi]\"  hi <|im_end|>  \"");
  REQUIRE(out.user.size() == 3);
  auto part = [&](std::size_t i) {
    return out.text.substr(out.user[i].begin, out.user[i].end - out.user[i].begin);
  };
  CHECK(part(0) == "hi <|im_end|>");          // the content, trimmed
  CHECK(part(1) == "hi");                     // a slice of it
  CHECK(part(2) == "\"  hi <|im_end|>  \"");  // its JSON
  // The template's own <|im_end|> tokens are outside every range.
  const std::size_t own = out.text.find("<|im_end|>[");
  for (const auto& r : out.user) CHECK_FALSE((own >= r.begin && own < r.end));
}

TEST_CASE("jinja: values", "[jinja]") {
  Value v = Value::parse_json(R"({"b": 1, "a": [1.5, "x", null, true], "c": {"d": -2}})");
  CHECK(v.to_json() == "{\"b\": 1, \"a\": [1.5, \"x\", null, true], \"c\": {\"d\": -2}}");
  CHECK(v.find("a")->as_array()[1].as_string() == "x");
  CHECK(v.find("zz") == nullptr);
  Value copy = v;
  copy.set("b", 2);  // copy on write
  CHECK(v.find("b")->as_int() == 1);
  CHECK(copy.find("b")->as_int() == 2);
  CHECK_THROWS_AS(Value::parse_json("{bad", "x.json"), assistgen::FormatError);
  CHECK_THROWS_AS(Value(1).as_string(), assistgen::InvalidArgument);
  CHECK_THROWS_AS(Template::parse("x").render(Value(3)), assistgen::InvalidArgument);
}
