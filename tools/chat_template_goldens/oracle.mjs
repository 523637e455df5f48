// The oracle shared by make_goldens.mjs and check_templates.mjs: Hugging
// Face's own JavaScript Jinja (@huggingface/jinja) with the clock fixed at
// 2025-01-15 10:30 local time, TZ=UTC (so that strftime_now() is
// reproducible; the C++ side passes the same time), and the context a
// template is rendered with.
import { Template } from "@huggingface/jinja";

process.env.TZ = "UTC";
const FIXED = new Date(2025, 0, 15, 10, 30, 0).getTime();
const RealDate = Date;
globalThis.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(FIXED);
    else super(...args);
  }
  static now() {
    return FIXED;
  }
};

export { Template };

// What apply_chat_template passes: every key of the conversation
// ("messages", "tools", ...), add_generation_prompt, bos_token, eos_token.
export function make_context(conversation, add_generation_prompt, spec) {
  return {
    ...conversation,
    add_generation_prompt,
    bos_token: spec.bos_token,
    eos_token: spec.eos_token,
  };
}

// The rendering as {text} or {error: message}.
export function render(template, context) {
  try {
    return { text: template.render(context) };
  } catch (e) {
    return { error: String(e.message) };
  }
}
