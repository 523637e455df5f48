// The oracle shared by make_goldens.mjs and check_templates.mjs: Hugging
// Face's own JavaScript Jinja (@huggingface/jinja) with the clock fixed at
// 2025-01-15 10:30 local time, TZ=UTC (so that strftime_now() is
// reproducible; the C++ side passes the same time), and the context a
// template is rendered with.
import { Environment, Template } from "@huggingface/jinja";

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

// A template's own raise_exception(message), told from the engine's errors:
// the global that @huggingface/jinja sets up (a function that throws an Error
// with the message) is replaced by one that throws this subclass, set the
// same way, so templates see no difference.
class TemplateRaised extends Error {}
const set_variable = Environment.prototype.set;
Environment.prototype.set = function (name, value) {
  if (name === "raise_exception")
    value = (message) => {
      throw new TemplateRaised(message);
    };
  return set_variable.call(this, name, value);
};

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

// The rendering as {text}, {error: message, raised: true} (the template's
// raise_exception) or {error: message} (any other failure).
export function render(template, context) {
  try {
    return { text: template.render(context) };
  } catch (e) {
    return e instanceof TemplateRaised ? { error: String(e.message), raised: true } : { error: String(e.message) };
  }
}
