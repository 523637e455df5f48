// Writes the real chat templates that npm @huggingface/ollama-utils carries
// (the GGUF chat_template of each model of Ollama's library that it maps:
// Llama 3.x, Qwen2.5, Mistral, Gemma 2, Phi-3.5/4, DeepSeek-R1 distills,
// Command-R, Hermes 3 and some eighty more) into OUT_DIR, one FILE.jinja each
// plus the templates.json manifest that check_templates.mjs reads, so that
// they can be checked against @huggingface/jinja without being committed:
//
//   cd tools/chat_template_goldens && npm install
//   npm install --no-save @huggingface/ollama-utils@0.0.18
//   node collect_ollama_templates.mjs OUT_DIR      # OUT_DIR outside the repository
//   node check_templates.mjs --engine BUILD/tests/template_check/render_templates OUT_DIR
//
// The package ships its TypeScript source; the table is read from it. The
// bos_token and eos_token of each entry are those of its family, told by the
// turn markers the template writes (they are data to both engines alike).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out || process.argv.length > 3) {
  console.error("usage: node collect_ollama_templates.mjs OUT_DIR");
  process.exit(2);
}
const source = path.join(here, "node_modules/@huggingface/ollama-utils/src/chat-template-automap.ts");
if (!fs.existsSync(source)) {
  console.error(`${source} is missing: npm install --no-save @huggingface/ollama-utils@0.0.18 first`);
  process.exit(2);
}
if (path.resolve(out).startsWith(path.resolve(here, "../..") + path.sep)) {
  console.error(`${out} is inside the repository: real templates are not committed, write them elsewhere`);
  process.exit(2);
}

// The table as a JavaScript module: its type annotations removed.
const module_text = fs
  .readFileSync(source, "utf8")
  .replace(/^import .*$/gm, "")
  .replace(/: OllamaChatTemplateMapEntry\[\]/, "");
fs.mkdirSync(out, { recursive: true });
const module_file = path.join(out, "automap.mjs");
fs.writeFileSync(module_file, module_text);
const { OLLAMA_CHAT_TEMPLATE_MAPPING: table } = await import(pathToFileURL(module_file).href);
fs.rmSync(module_file);

// bos/eos of the family whose turn markers the template writes.
function family_tokens(src) {
  if (src.includes("<|start_header_id|>")) return ["<|begin_of_text|>", "<|eot_id|>"];
  if (src.includes("<｜")) return ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"];
  if (src.includes("<|START_OF_TURN_TOKEN|>")) return ["<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"];
  if (src.includes("<start_of_turn>")) return ["<bos>", "<eos>"];
  if (src.includes("<|im_start|>")) return ["", "<|im_end|>"];
  if (src.includes("<|end|>")) return ["<s>", "<|endoftext|>"];
  return ["<s>", "</s>"];
}

const manifest = {};
const seen = new Set();
for (const entry of table) {
  if (seen.has(entry.gguf)) continue;
  seen.add(entry.gguf);
  let name = entry.model.replace(/^library\//, "").replace(/[^A-Za-z0-9._-]/g, "_");
  while (manifest[name]) name += "_b";
  fs.writeFileSync(path.join(out, `${name}.jinja`), entry.gguf);
  const [bos_token, eos_token] = family_tokens(entry.gguf);
  manifest[name] = {
    file: `${name}.jinja`,
    bos_token,
    eos_token,
    source: `npm @huggingface/ollama-utils, chat-template-automap.ts: ${entry.model}`,
  };
}
fs.writeFileSync(path.join(out, "templates.json"), JSON.stringify(manifest, null, 1) + "\n");
console.log(`${out}: ${Object.keys(manifest).length} templates`);
