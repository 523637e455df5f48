// The official `openai` client against a running `assistgen serve`
// (tests/server/run_node_test.sh starts it): both endpoints, streaming and
// not, all requests of a kind in flight at once; greedy outputs must equal
// `assistgen generate`'s, token for token (run here through the CLI). Also: /v1/models, a wrong model and a wrong API key
// as the client's typed errors, and a stream aborted mid-way, which must
// free its sequence at once (/metrics). Exits non-zero on any failure.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';

const [base, apiKey, cli, modelsDir, template, modelName] = process.argv.slice(2);
const target = path.join(modelsDir, 'kjv-target'), draft = path.join(modelsDir, 'kjv-draft');
const run = (...args) => execFileSync(cli, args, { encoding: 'utf8', maxBuffer: 1 << 24 });

// The reference: `assistgen generate --tokens` (one sequence, the CLI's own
// decoder), assisted by the same draft, greedy; ids in, ids out, the text by
// `assistgen detokenize`.
function reference(promptIds, maxTokens) {
  const out = run('generate', '-m', target, '-a', draft, '--tokens', promptIds.join(','), '-n', String(maxTokens),
                  '--greedy', '--json');
  const lines = out.trim().split('\n');
  const stats = JSON.parse(lines[lines.length - 1]);
  const ids = lines[0].trim() === '' ? [] : lines[0].trim().split(',').map(Number);
  if (JSON.stringify(ids) !== JSON.stringify(stats.tokens)) throw new Error(`generate printed ${lines[0]} but tokens ${stats.tokens}`);
  const text = ids.length ? run('detokenize', '-m', target, '--tokens', ids.join(',')).replace(/\n$/, '') : '';
  return { tokens: ids, text, stop: stats.stop, prompt_tokens: promptIds.length };
}
const encode = (text, ...flags) => {
  const out = run('tokenize', '-m', target, '-p', text, ...flags).trim();
  return out === '' ? [] : out.split(',').map(Number);
};

const prompts = [['And God said', 24], ['In the beginning', 16], ['The LORD is my shepherd', 32],
                 ['Blessed are the', 8], ['And it came to pass', 20], ['Jesus wept', 12]];
const expected = { model: modelName, completions: [], chat: [] };
for (const [prompt, max_tokens] of prompts)
  expected.completions.push({ prompt, max_tokens, ...reference(encode(prompt), max_tokens) });
const conversations = [
  [{ role: 'system', content: 'You answer in the words of the King James Bible.' },
   { role: 'user', content: 'What did God say?' }],
  [{ role: 'user', content: 'Who begat Enos?' }],
];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'assistgen-chat-'));
conversations.forEach((messages, i) => {
  const file = path.join(tmp, `c${i}.json`);
  fs.writeFileSync(file, JSON.stringify(messages));
  const rendered = run('template', '-m', target, '--template', template, '--messages', file, '--add-generation-prompt');
  // The template's special tokens parsed, none added (ChatTemplate::encode).
  const ids = encode(rendered, '--no-special', '--parse-special');
  expected.chat.push({ messages, max_tokens: 20, ...reference(ids, 20) });
});
fs.rmSync(tmp, { recursive: true });

const client = new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 60000 });
let failures = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures++;
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === expected.model, `/v1/models lists "${expected.model}"`);

// Completions, not streamed, all at once.
const plain = await Promise.all(expected.completions.map((c) =>
  client.completions.create({ model: expected.model, prompt: c.prompt, max_tokens: c.max_tokens, temperature: 0 })));
plain.forEach((r, i) => {
  const c = expected.completions[i];
  check(r.object === 'text_completion' && r.choices.length === 1, `completion ${i}: shape`);
  check(r.choices[0].text === c.text, `completion ${i}: text equals assistgen generate's`);
  check(same(r.assistgen.completion_token_ids, c.tokens), `completion ${i}: ids equal assistgen generate's`);
  check(r.usage.completion_tokens === c.tokens.length && r.usage.prompt_tokens === c.prompt_tokens &&
        r.usage.total_tokens === c.prompt_tokens + c.tokens.length, `completion ${i}: usage`);
  check(r.choices[0].finish_reason === (c.stop === 'max_new_tokens' ? 'length' : 'stop'), `completion ${i}: finish_reason`);
});

// Completions, streamed, all at once.
const streamed = await Promise.all(expected.completions.map(async (c) => {
  const s = await client.completions.create({ model: expected.model, prompt: c.prompt, max_tokens: c.max_tokens,
                                              temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '', ids = null, finish = null, usage = null, chunks = 0;
  for await (const chunk of s) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
    if (chunk.assistgen) ids = chunk.assistgen.completion_token_ids;
  }
  return { text, ids, finish, usage, chunks };
}));
streamed.forEach((r, i) => {
  const c = expected.completions[i];
  check(r.text === c.text, `streamed completion ${i}: text equals assistgen generate's (${r.chunks} chunks)`);
  check(same(r.ids, c.tokens), `streamed completion ${i}: ids equal assistgen generate's`);
  check(r.finish !== null && r.usage && r.usage.completion_tokens === c.tokens.length, `streamed completion ${i}: finish_reason and usage`);
});

// Chat, not streamed and streamed, all at once: the same reply either way,
// and the reply of the rendered conversation sent as token ids.
const chats = await Promise.all(expected.chat.map(async (c) => {
  const full = await client.chat.completions.create({ model: expected.model, messages: c.messages,
                                                      max_tokens: c.max_tokens, temperature: 0 });
  const s = await client.chat.completions.create({ model: expected.model, messages: c.messages,
                                                   max_tokens: c.max_tokens, temperature: 0, stream: true });
  let text = '', role = null, ids = null;
  for await (const chunk of s) {
    const d = chunk.choices[0]?.delta ?? {};
    if (d.role) role = d.role;
    if (d.content) text += d.content;
    if (chunk.assistgen) ids = chunk.assistgen.completion_token_ids;
  }
  return { full, text, role, ids };
}));
chats.forEach((r, i) => {
  const c = expected.chat[i];
  check(r.full.object === 'chat.completion' && r.full.choices[0].message.role === 'assistant', `chat ${i}: shape`);
  check(r.full.choices[0].message.content === c.text, `chat ${i}: reply equals assistgen generate's on the rendered conversation`);
  check(same(r.full.assistgen.completion_token_ids, c.tokens), `chat ${i}: ids equal assistgen generate's`);
  check(r.role === 'assistant' && r.text === c.text && same(r.ids, c.tokens), `streamed chat ${i}: the same reply`);
});

// Errors as the client's typed exceptions.
try {
  await client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 });
  check(false, 'unknown model is refused');
} catch (e) {
  check(e instanceof OpenAI.NotFoundError && e.code === 'model_not_found', `unknown model: ${e.status} ${e.code}`);
}
try {
  const wrong = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
  await wrong.completions.create({ model: expected.model, prompt: 'x', max_tokens: 1 });
  check(false, 'wrong API key is refused');
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError, `wrong API key: ${e.status}`);
}

// A client that leaves mid-stream frees its sequence at once.
async function metric(name) {
  const text = await (await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${apiKey}` } })).text();
  const m = text.match(new RegExp(`^assistgen_${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}
const cancelledBefore = await metric('requests_cancelled_total');
const controller = new AbortController();
const long = await client.completions.create({ model: expected.model, prompt: 'And God said', max_tokens: 400, ignore_eos: true,
                                               temperature: 0, stream: true }, { signal: controller.signal });
let got = 0;
try {
  for await (const chunk of long) {
    if (chunk.choices[0]?.text) got++;
    if (got === 3) controller.abort();
  }
} catch (e) {
  // the abort
}
const t0 = Date.now();
let cancelled = cancelledBefore, running = 1;
while (Date.now() - t0 < 10000) {
  cancelled = await metric('requests_cancelled_total');
  running = await metric('batch_size');
  if (cancelled > cancelledBefore && running === 0) break;
  await new Promise((r) => setTimeout(r, 20));
}
check(cancelled === cancelledBefore + 1 && running === 0,
      `aborted stream: sequence cancelled and freed after ${Date.now() - t0} ms`);

console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
