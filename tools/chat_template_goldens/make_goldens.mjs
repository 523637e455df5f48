// Renders every chat template of tests/data/templates/ on every conversation
// of tests/data/templates/conversations.json, with add_generation_prompt off
// and on, using Hugging Face's own JavaScript implementation
// (@huggingface/jinja) as the independent oracle, and writes the results to
// tests/data/templates/goldens.json: the text, or the error with "raised":
// true when it is the template's own raise_exception (oracle.mjs).
//
//   cd tools/chat_template_goldens && npm install && node make_goldens.mjs [DIR]
//
// DIR (default tests/data/templates) holds templates.json: {name: {file,
// bos_token, eos_token}}. The clock is fixed (2025-01-15 10:30 local time,
// TZ=UTC) so that strftime_now() is reproducible; the C++ test passes the
// same time. `--check-only FILE.jinja CONTEXT.json` prints one render instead.
import { Template, make_context, render } from "./oracle.mjs";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);

if (args[0] === "--check-only") {
  const source = fs.readFileSync(args[1], "utf8");
  const context = JSON.parse(fs.readFileSync(args[2], "utf8"));
  let result;
  try {
    result = render(new Template(source), context);
  } catch (e) {
    result = { error: String(e.message) };
  }
  process.stdout.write(JSON.stringify(result));
  process.exit(0);
}

const dir = path.resolve(args[0] ?? path.join(here, "../../tests/data/templates"));
const manifest = JSON.parse(fs.readFileSync(path.join(dir, "templates.json"), "utf8"));
const conversations = JSON.parse(fs.readFileSync(path.join(dir, "conversations.json"), "utf8"));

const cases = [];
for (const [name, spec] of Object.entries(manifest)) {
  const source = fs.readFileSync(path.join(dir, spec.file), "utf8");
  const template = new Template(source);
  for (const [conv_name, conv] of Object.entries(conversations)) {
    for (const add_generation_prompt of [false, true]) {
      const c = { template: name, conversation: conv_name, add_generation_prompt };
      cases.push({ ...c, ...render(template, make_context(conv, add_generation_prompt, spec)) });
    }
  }
}
const out = path.join(dir, "goldens.json");
fs.writeFileSync(out, JSON.stringify({ oracle: "@huggingface/jinja 0.5.13", cases }, null, 1) + "\n");
const raised = cases.filter((c) => c.raised).length;
const errors = cases.filter((c) => c.error !== undefined).length - raised;
console.log(
  `${out}: ${cases.length} cases (${raised} raise_exception, ${errors} other failures), ${Object.keys(manifest).length} templates`,
);
