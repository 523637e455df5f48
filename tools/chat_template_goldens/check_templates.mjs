// Checks that assistgen's Jinja engine renders chat templates byte for byte
// as Hugging Face's own JavaScript engine (@huggingface/jinja) does: every
// template of each DIR on every conversation of CONVERSATIONS.json, with
// add_generation_prompt off and on.
//
//   cd tools/chat_template_goldens && npm install
//   node check_templates.mjs --engine BUILD/tests/template_check/render_templates \
//       [--conversations FILE] [--show N] DIR [DIR...]
//
// Each DIR holds a manifest, templates.json: {name: {file, bos_token,
// eos_token, source?}}, files relative to DIR (tests/data/templates is one;
// real templates are checked by putting them in a folder of their own with
// such a manifest; they are not committed). CONVERSATIONS.json defaults to
// tests/data/templates/conversations.json. The oracle renders with the
// context and clock of make_goldens.mjs (oracle.mjs); the engine side is
// tests/template_check/render_templates (a CMake target), which renders
// through ChatTemplate with the same context and clock.
//
// How results are compared:
// - a text must be identical byte for byte (the first difference is shown);
// - a template's own raise_exception must be raised by both, with the same
//   message (the oracle tells it from other errors: oracle.mjs);
// - any other failure (an undefined field, a type error, an unknown filter)
//   must be a failure in both; each engine words it its own way, so those
//   messages are not compared;
// - a template that neither engine parses agrees on all its renderings; one
//   that only one engine parses is a difference on all of them;
// - anything else (a text on one side, a raise on one side only) differs.
// Prints one line per template and a summary; exits 1 when anything differs.
import { Template, make_context, render } from "./oracle.mjs";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function usage(message) {
  console.error(`check_templates.mjs: ${message}`);
  console.error(
    "usage: node check_templates.mjs --engine RENDER_TEMPLATES [--conversations FILE] [--show N] DIR [DIR...]",
  );
  process.exit(2);
}

let engine;
let conversations_file = path.resolve(here, "../../tests/data/templates/conversations.json");
let show = 3;
const dirs = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; ++i) {
  const a = argv[i];
  if (a === "--engine" || a === "--conversations" || a === "--show") {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    const v = argv[++i];
    if (a === "--engine") engine = path.resolve(v);
    else if (a === "--conversations") conversations_file = path.resolve(v);
    else show = Number.parseInt(v, 10);
  } else if (a.startsWith("--")) {
    usage(`unknown option ${a}`);
  } else {
    dirs.push(path.resolve(a));
  }
}
if (!engine) usage("--engine is required (the render_templates binary of a build)");
if (dirs.length === 0) usage("give at least one folder with a templates.json");

function read_json(file) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    usage(`${file}: cannot be read (${e.code ?? e.message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    usage(`${file}: not valid JSON (${e.message})`);
  }
}

// Where two texts first differ, in UTF-8 bytes, with a little context.
function first_difference(expected, actual) {
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(actual, "utf8");
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) ++i;
  const around = (buf) => JSON.stringify(buf.subarray(Math.max(0, i - 20), i + 30).toString("utf8"));
  return `byte ${i} (lengths ${a.length} and ${b.length}): oracle ${around(a)}, assistgen ${around(b)}`;
}

// Whether the two results agree; else why not.
function compare(oracle, ours) {
  if (oracle.text !== undefined && ours.text !== undefined)
    return oracle.text === ours.text ? { kind: "text" } : { diff: first_difference(oracle.text, ours.text) };
  if (oracle.text !== undefined)
    return { diff: `assistgen fails (${ours.raised ?? ours.error}), the oracle renders` };
  if (ours.text !== undefined) return { diff: `the oracle fails (${oracle.error}), assistgen renders` };
  if (ours.raised !== undefined && oracle.raised)
    return ours.raised === oracle.error
      ? { kind: "raised" }
      : { diff: `raise_exception: assistgen says ${JSON.stringify(ours.raised)}, the oracle ${JSON.stringify(oracle.error)}` };
  if (ours.raised !== undefined) return { diff: `assistgen raises ${JSON.stringify(ours.raised)}, the oracle fails (${oracle.error})` };
  if (oracle.raised) return { diff: `the oracle raises ${JSON.stringify(oracle.error)}, assistgen fails (${ours.error})` };
  return { kind: "error" };
}

const conversations = read_json(conversations_file);
const totals = { templates: 0, renderings: 0, text: 0, raised: 0, error: 0, unparsed: 0, differences: 0 };
const failing = [];

for (const dir of dirs) {
  const manifest_file = path.join(dir, "templates.json");
  const manifest = read_json(manifest_file);
  if (typeof manifest !== "object" || manifest === null || Array.isArray(manifest))
    usage(`${manifest_file}: expected an object {name: {file, bos_token, eos_token}}`);
  for (const [name, spec] of Object.entries(manifest)) {
    if (typeof spec !== "object" || spec === null || typeof spec.file !== "string")
      usage(`${manifest_file}: "${name}" needs a "file" (a string)`);
    for (const key of ["bos_token", "eos_token"])
      if (spec[key] !== undefined && typeof spec[key] !== "string")
        usage(`${manifest_file}: "${name}": ${key} must be a string`);
    if (!fs.existsSync(path.join(dir, spec.file)))
      usage(`${manifest_file}: "${name}": ${path.join(dir, spec.file)} does not exist`);
  }
  let engine_out;
  try {
    engine_out = JSON.parse(
      execFileSync(engine, [manifest_file, conversations_file], {
        encoding: "utf8",
        maxBuffer: 1 << 30,
        stdio: ["ignore", "pipe", "inherit"],
      }),
    );
  } catch (e) {
    console.error(`check_templates.mjs: ${engine} failed on ${manifest_file}: ${e.message}`);
    process.exit(2);
  }
  for (const [name, spec] of Object.entries(manifest)) {
    ++totals.templates;
    const source = fs.readFileSync(path.join(dir, spec.file), "utf8");
    const ours = engine_out[name];
    const n = Object.keys(conversations).length * 2;
    totals.renderings += n;
    let template;
    let parse_error;
    try {
      template = new Template(source);
    } catch (e) {
      parse_error = String(e.message);
    }
    if (parse_error !== undefined || ours.parse_error !== undefined) {
      if (parse_error !== undefined && ours.parse_error !== undefined) {
        totals.unparsed += n;
        console.log(`${name}: neither engine parses it (oracle: ${parse_error})`);
      } else {
        totals.differences += n;
        failing.push(name);
        console.log(
          `${name}: DIFFERS: ${parse_error !== undefined ? `only assistgen parses it (oracle: ${parse_error})` : `only the oracle parses it (assistgen: ${ours.parse_error})`}`,
        );
      }
      continue;
    }
    const diffs = [];
    const kinds = { text: 0, raised: 0, error: 0 };
    for (const [conv_name, conv] of Object.entries(conversations)) {
      [false, true].forEach((agp, k) => {
        const oracle = render(template, make_context(conv, agp, spec));
        const r = compare(oracle, ours.cases[conv_name][k]);
        if (r.diff !== undefined) diffs.push(`${conv_name}, add_generation_prompt=${agp}: ${r.diff}`);
        else ++kinds[r.kind];
      });
    }
    totals.text += kinds.text;
    totals.raised += kinds.raised;
    totals.error += kinds.error;
    totals.differences += diffs.length;
    const tally = `${kinds.text} texts, ${kinds.raised} raise_exception, ${kinds.error} other failures`;
    if (diffs.length === 0) {
      console.log(`${name}: ${n} identical (${tally})`);
    } else {
      failing.push(name);
      console.log(`${name}: DIFFERS in ${diffs.length} of ${n} (agree: ${tally})`);
      for (const d of diffs.slice(0, show)) console.log(`  ${d}`);
      if (diffs.length > show) console.log(`  ... and ${diffs.length - show} more`);
    }
  }
}

console.log(
  `${totals.templates} templates x ${Object.keys(conversations).length} conversations x 2: ` +
    `${totals.renderings} renderings compared: ${totals.text} identical texts, ` +
    `${totals.raised} same raise_exception, ${totals.error} failing in both, ` +
    `${totals.unparsed} in templates neither parses, ${totals.differences} differences`,
);
if (failing.length > 0) {
  console.log(`differences in: ${failing.join(", ")}`);
  process.exit(1);
}
