"""Independent float64 reference of the Hugging Face decoder forward pass.

Implements, in numpy float64, the math of transformers' LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM and GPT2LMHeadModel (modeling_llama.py,
modeling_mistral.py, modeling_qwen2.py, modeling_gpt2.py) for a single sequence
starting at position 0, including sliding-window attention (a query at
position i sees keys j with i - j < sliding_window, HF's
sliding_window_overlay `kv_idx > q_idx - sliding_window`), reading a HF
model directory (config.json + model.safetensors, or the shards named by
model.safetensors.index.json). F32/F16/BF16 weights are widened exactly to
float64; every intermediate is float64 (HF computes RMSNorm, RoPE tables and
softmax in float32 and the rest in the model dtype; float64 is the "true"
value those approximate).

Run with Debian's /usr/bin/python3 (needs numpy only; the pyenv python3 on
PATH may lack it):

  /usr/bin/python3 tools/hf_reference.py logits   MODEL_DIR --tokens 1,2,3 [--out ref.npy]
  /usr/bin/python3 tools/hf_reference.py generate MODEL_DIR --tokens 1,2,3 -n 16
  /usr/bin/python3 tools/hf_reference.py compare  MODEL_DIR --tokens 1,2,3 --npy ours.npy [--rtol 1e-3]

`compare` loads a float32 [n, vocab] .npy (e.g. from `assistgen logits -m DIR
--tokens ... --out ours.npy`) and passes when max|ours - ref| <= rtol * max|ref|
and every row has the same argmax; it prints the figures and exits 1 otherwise.
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors  # noqa: E402

SUPPORTED = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "GPT2LMHeadModel": "gpt2",
}


class ReferenceError(Exception):
    pass


# ---------------------------------------------------------------- config ----


class Config:
    """The hyper-parameters HF's config classes would produce, with HF's defaults."""

    def __init__(self, raw, source="config.json"):
        self.raw = raw
        archs = raw.get("architectures") or []
        arch = archs[0] if archs else None
        model_type = raw.get("model_type")
        if arch is None:
            arch = {v: k for k, v in SUPPORTED.items()}.get(model_type)
        if arch not in SUPPORTED:
            raise ReferenceError(f"{source}: unsupported architecture {arch!r} (model_type {model_type!r})")
        self.arch = arch
        self.model_type = SUPPORTED[arch]

        def req(key):
            if key not in raw:
                raise ReferenceError(f"{source}: missing field {key}")
            return raw[key]

        self.sliding_layers = None  # None: the window (if any) applies to every layer
        if self.model_type == "gpt2":
            self._gpt2(raw, source)
            return
        self.family = "llama"
        self.vocab_size = int(req("vocab_size"))
        self.hidden_size = int(req("hidden_size"))
        self.intermediate_size = int(req("intermediate_size"))
        self.num_hidden_layers = int(req("num_hidden_layers"))
        self.num_attention_heads = int(req("num_attention_heads"))
        kv = raw.get("num_key_value_heads")
        self.num_key_value_heads = int(kv) if kv is not None else self.num_attention_heads
        hd = raw.get("head_dim")
        # Llama/Mistral/Qwen2 all use config.head_dim when set, else hidden // heads.
        self.head_dim = int(hd) if hd is not None else self.hidden_size // self.num_attention_heads
        self.rms_norm_eps = float(raw.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(raw.get("rope_theta", 10000.0))
        self.rope_scaling = raw.get("rope_scaling")
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", False))
        self.hidden_act = raw.get("hidden_act", "silu")
        if self.hidden_act not in ACTIVATIONS:
            raise ReferenceError(f"{source}: hidden_act {self.hidden_act!r} unsupported ({', '.join(ACTIVATIONS)})")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ReferenceError(f"{source}: num_attention_heads not a multiple of num_key_value_heads")

        if self.model_type == "llama":
            self.qkv_bias = bool(raw.get("attention_bias", False))
            self.o_bias = self.qkv_bias
            self.mlp_bias = bool(raw.get("mlp_bias", False))
            self.sliding_window = None
        elif self.model_type == "qwen2":
            self.qkv_bias, self.o_bias, self.mlp_bias = True, False, False
            # Qwen2Config: the window counts only with use_sliding_window, and
            # only in layers layer_types marks "sliding_attention", else in
            # layers >= max_window_layers (default 28).
            use_sw = bool(raw.get("use_sliding_window", False))
            self.sliding_window = raw.get("sliding_window") if use_sw else None
            if self.sliding_window is not None:
                types = raw.get("layer_types")
                if types is None:
                    first = raw.get("max_window_layers", 28)
                    types = ["sliding_attention" if i >= first else "full_attention"
                             for i in range(self.num_hidden_layers)]
                self.sliding_layers = [t == "sliding_attention" for t in types]
        else:  # mistral
            self.qkv_bias, self.o_bias, self.mlp_bias = False, False, False
            # MistralConfig's default sliding_window is 4096 when the key is absent.
            self.sliding_window = raw.get("sliding_window", 4096)

    def _gpt2(self, raw, source):
        """GPT2Config: its own field names and defaults."""
        self.family = "gpt2"
        self.vocab_size = int(raw.get("vocab_size", 50257))
        self.hidden_size = int(raw.get("n_embd", 768))
        self.num_hidden_layers = int(raw.get("n_layer", 12))
        self.num_attention_heads = int(raw.get("n_head", 12))
        self.num_key_value_heads = self.num_attention_heads
        self.n_positions = int(raw.get("n_positions", 1024))
        inner = raw.get("n_inner")
        self.intermediate_size = int(inner) if inner is not None else 4 * self.hidden_size
        if self.hidden_size % self.num_attention_heads:
            raise ReferenceError(f"{source}: n_embd not divisible by n_head")
        self.head_dim = self.hidden_size // self.num_attention_heads
        self.layer_norm_epsilon = float(raw.get("layer_norm_epsilon", 1e-5))
        self.tie_word_embeddings = bool(raw.get("tie_word_embeddings", True))
        self.hidden_act = raw.get("activation_function", "gelu_new")
        if self.hidden_act not in ACTIVATIONS:
            raise ReferenceError(f"{source}: activation_function {self.hidden_act!r} unsupported")
        if not raw.get("scale_attn_weights", True) or raw.get("scale_attn_by_inverse_layer_idx", False):
            raise ReferenceError(f"{source}: only GPT-2's 1/sqrt(head_dim) attention scaling is modelled")
        self.sliding_window = None

    def window(self, layer):
        """The sliding window of `layer`, or None for full causal attention."""
        if self.sliding_window is None:
            return None
        if self.sliding_layers is not None and not self.sliding_layers[layer]:
            return None
        return int(self.sliding_window)


def load_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        return Config(json.load(f), path)


# --------------------------------------------------------------- weights ----


def load_weights(model_dir):
    """name -> float64 array, from model.safetensors or the sharded index (HF prefers the single file)."""
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    out = {}
    if os.path.exists(single):
        tensors, _ = read_safetensors(single)
        for name, t in tensors.items():
            out[name] = t.to_float64()
        return out
    if not os.path.exists(index):
        raise ReferenceError(f"{model_dir}: neither model.safetensors nor model.safetensors.index.json")
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    shards = {}
    for name, shard in weight_map.items():
        if shard not in shards:
            shards[shard], _ = read_safetensors(os.path.join(model_dir, shard))
        if name not in shards[shard]:
            raise ReferenceError(f"{model_dir}/{shard}: tensor {name} listed in the index is absent")
        out[name] = shards[shard][name].to_float64()
    return out


class Model:
    def __init__(self, model_dir):
        self.dir = model_dir
        self.config = load_config(model_dir)
        self.w = load_weights(model_dir)
        if self.config.family == "gpt2":
            # GPT2LMHeadModel checkpoints say "transformer.wte.weight"; bare
            # GPT2Model exports drop the prefix.
            self.prefix = "transformer." if "transformer.wte.weight" in self.w else ""
            self._check_gpt2_shapes()
        else:
            self.inv_freq, self.attention_scaling = rope_inv_freq(self.config)
            self._check_shapes()

    def get(self, name):
        if name not in self.w:
            raise ReferenceError(f"{self.dir}: missing tensor {name}")
        return self.w[name]

    def _check_shapes(self):
        c = self.config
        h, hd, nh, nkv, inter = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size
        want = {"model.embed_tokens.weight": (c.vocab_size, h), "model.norm.weight": (h,)}
        if not c.tie_word_embeddings:
            want["lm_head.weight"] = (c.vocab_size, h)
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            want[p + "input_layernorm.weight"] = (h,)
            want[p + "post_attention_layernorm.weight"] = (h,)
            want[p + "self_attn.q_proj.weight"] = (nh * hd, h)
            want[p + "self_attn.k_proj.weight"] = (nkv * hd, h)
            want[p + "self_attn.v_proj.weight"] = (nkv * hd, h)
            want[p + "self_attn.o_proj.weight"] = (h, nh * hd)
            if c.qkv_bias:
                want[p + "self_attn.q_proj.bias"] = (nh * hd,)
                want[p + "self_attn.k_proj.bias"] = (nkv * hd,)
                want[p + "self_attn.v_proj.bias"] = (nkv * hd,)
            if c.o_bias:
                want[p + "self_attn.o_proj.bias"] = (h,)
            want[p + "mlp.gate_proj.weight"] = (inter, h)
            want[p + "mlp.up_proj.weight"] = (inter, h)
            want[p + "mlp.down_proj.weight"] = (h, inter)
            if c.mlp_bias:
                want[p + "mlp.gate_proj.bias"] = (inter,)
                want[p + "mlp.up_proj.bias"] = (inter,)
                want[p + "mlp.down_proj.bias"] = (h,)
        for name, shape in want.items():
            got = self.get(name).shape
            if tuple(got) != shape:
                raise ReferenceError(f"{self.dir}: tensor {name} has shape {list(got)}, expected {list(shape)}")

    def _check_gpt2_shapes(self):
        c, t = self.config, self.prefix
        h, inter = c.hidden_size, c.intermediate_size
        # Conv1D weights are stored [in, out].
        want = {t + "wte.weight": (c.vocab_size, h), t + "wpe.weight": (c.n_positions, h),
                t + "ln_f.weight": (h,), t + "ln_f.bias": (h,)}
        if not c.tie_word_embeddings:
            want["lm_head.weight"] = (c.vocab_size, h)
        for i in range(c.num_hidden_layers):
            p = f"{t}h.{i}."
            for ln in ("ln_1", "ln_2"):
                want[p + ln + ".weight"] = (h,)
                want[p + ln + ".bias"] = (h,)
            for name, shape in (("attn.c_attn", (h, 3 * h)), ("attn.c_proj", (h, h)),
                                ("mlp.c_fc", (h, inter)), ("mlp.c_proj", (inter, h))):
                want[p + name + ".weight"] = shape
                want[p + name + ".bias"] = (shape[1],)
        for name, shape in want.items():
            got = self.get(name).shape
            if tuple(got) != shape:
                raise ReferenceError(f"{self.dir}: tensor {name} has shape {list(got)}, expected {list(shape)}")

    # ----------------------------------------------------------- forward ----

    def logits(self, tokens):
        """float64 [n, vocab] logits for `tokens` at positions 0..n-1."""
        c = self.config
        tokens = [int(t) for t in tokens]
        n = len(tokens)
        if n == 0:
            raise ReferenceError("empty token sequence")
        for t in tokens:
            if not 0 <= t < c.vocab_size:
                raise ReferenceError(f"token id {t} out of range [0, {c.vocab_size})")
        if c.family == "gpt2":
            return self._gpt2_logits(tokens)
        x = self.get("model.embed_tokens.weight")[tokens]  # [n, h]
        cos, sin = rope_tables(self.inv_freq, self.attention_scaling, np.arange(n, dtype=np.float64))
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            hn = rms_norm(x, self.get(p + "input_layernorm.weight"), c.rms_norm_eps)
            x = x + self._attention(p + "self_attn.", hn, cos, sin, c.window(i))
            hn = rms_norm(x, self.get(p + "post_attention_layernorm.weight"), c.rms_norm_eps)
            x = x + self._mlp(p + "mlp.", hn)
        x = rms_norm(x, self.get("model.norm.weight"), c.rms_norm_eps)
        head = self.get("model.embed_tokens.weight") if c.tie_word_embeddings else self.get("lm_head.weight")
        return x @ head.T

    def _linear(self, name, x, bias):
        y = x @ self.get(name + ".weight").T
        if bias:
            y = y + self.get(name + ".bias")
        return y

    def _gpt2_logits(self, tokens):
        """GPT2LMHeadModel: x = wte[t] + wpe[pos]; per block x += attn(ln_1(x)),
        x += mlp(ln_2(x)); ln_f; tied head. Conv1D: y = x @ W + b, W [in, out]."""
        c, t = self.config, self.prefix
        n = len(tokens)
        if n > c.n_positions:
            raise ReferenceError(f"sequence length {n} exceeds n_positions {c.n_positions}")
        eps = c.layer_norm_epsilon
        h, nh, hd = c.hidden_size, c.num_attention_heads, c.head_dim

        def conv1d(name, x):
            return x @ self.get(name + ".weight") + self.get(name + ".bias")

        def ln(name, x):
            return layer_norm(x, self.get(name + ".weight"), self.get(name + ".bias"), eps)

        act = ACTIVATIONS[c.hidden_act]
        x = self.get(t + "wte.weight")[tokens] + self.get(t + "wpe.weight")[np.arange(n)]
        for i in range(c.num_hidden_layers):
            p = f"{t}h.{i}."
            qkv = conv1d(p + "attn.c_attn", ln(p + "ln_1", x))  # [n, 3h]: q | k | v
            q, k, v = (qkv[:, j * h:(j + 1) * h].reshape(n, nh, hd).transpose(1, 0, 2) for j in range(3))
            out = causal_attention(q, k, v, None).transpose(1, 0, 2).reshape(n, h)
            x = x + conv1d(p + "attn.c_proj", out)
            x = x + conv1d(p + "mlp.c_proj", act(conv1d(p + "mlp.c_fc", ln(p + "ln_2", x))))
        x = ln(t + "ln_f", x)
        head = self.get(t + "wte.weight") if c.tie_word_embeddings else self.get("lm_head.weight")
        return x @ head.T

    def _attention(self, p, x, cos, sin, window):
        c = self.config
        n = x.shape[0]
        nh, nkv, hd = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        # view(n, heads, head_dim).transpose -> [heads, n, head_dim]
        q = self._linear(p + "q_proj", x, c.qkv_bias).reshape(n, nh, hd).transpose(1, 0, 2)
        k = self._linear(p + "k_proj", x, c.qkv_bias).reshape(n, nkv, hd).transpose(1, 0, 2)
        v = self._linear(p + "v_proj", x, c.qkv_bias).reshape(n, nkv, hd).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = nh // nkv
        # repeat_kv: kv head j serves query heads j*g .. j*g+g-1
        k = np.repeat(k, g, axis=0)
        v = np.repeat(v, g, axis=0)
        out = causal_attention(q, k, v, window).transpose(1, 0, 2).reshape(n, nh * hd)
        return self._linear(p + "o_proj", out, c.o_bias)

    def _mlp(self, p, x):
        b = self.config.mlp_bias
        gate = self._linear(p + "gate_proj", x, b)
        up = self._linear(p + "up_proj", x, b)
        return self._linear(p + "down_proj", ACTIVATIONS[self.config.hidden_act](gate) * up, b)

    def generate(self, prompt, n_new):
        """Greedy continuation (argmax, lowest id on ties), recomputing the whole sequence each step.

        Does not stop at eos: returns exactly n_new ids.
        """
        seq = [int(t) for t in prompt]
        new = []
        for _ in range(n_new):
            t = int(np.argmax(self.logits(seq)[-1]))
            seq.append(t)
            new.append(t)
        return new


# ------------------------------------------------------------------ math ----


def rms_norm(x, weight, eps):
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return weight * (x / np.sqrt(variance + eps))


def layer_norm(x, weight, bias, eps):
    """torch.nn.LayerNorm: biased variance over the last axis."""
    mean = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    """HF's gelu_new (= gelu_pytorch_tanh): the tanh approximation of GELU."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS = {"silu": silu, "swish": silu, "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh}


def causal_attention(q, k, v, window):
    """softmax(q k^T / sqrt(d) + mask) v for [heads, n, d] arrays. Query i sees
    keys j <= i, and with a window only those with i - j < window."""
    n, hd = q.shape[1], q.shape[2]
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)  # [heads, n, n]
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    masked = j > i
    if window is not None:
        masked |= (i - j) >= window
    scores = np.where(masked, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    return probs @ v


def rotate_half(x):
    d = x.shape[-1] // 2
    return np.concatenate([-x[..., d:], x[..., :d]], axis=-1)


def rope_inv_freq(c):
    """inv_freq (float64, length head_dim/2) and attention_scaling, as HF's ROPE_INIT_FUNCTIONS."""
    d = c.head_dim
    inv_freq = 1.0 / (c.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    rs = c.rope_scaling
    if not rs:
        return inv_freq, 1.0
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / float(rs["factor"]), 1.0
    if kind == "llama3":
        factor = float(rs["factor"])
        low = float(rs["low_freq_factor"])
        high = float(rs["high_freq_factor"])
        orig = float(rs["original_max_position_embeddings"])
        low_freq_wavelen = orig / low
        high_freq_wavelen = orig / high
        wavelen = 2.0 * math.pi / inv_freq
        scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (orig / wavelen - low) / (high - low)
        smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
        return np.where(medium, smoothed, scaled), 1.0
    raise ReferenceError(f"rope_scaling type {kind!r} unsupported (default, linear, llama3)")


def rope_tables(inv_freq, attention_scaling, positions):
    freqs = np.outer(positions, inv_freq)  # [n, d/2]
    emb = np.concatenate([freqs, freqs], axis=-1)  # [n, d]
    return np.cos(emb) * attention_scaling, np.sin(emb) * attention_scaling


# ------------------------------------------------------------------- CLI ----


def compare_logits(ours, ref, rtol=1e-3):
    """Returns (ok, report lines)."""
    ours = np.asarray(ours, dtype=np.float64)
    lines = []
    if ours.shape != ref.shape:
        return False, [f"shape mismatch: ours {list(ours.shape)} vs reference {list(ref.shape)}"]
    scale = float(np.max(np.abs(ref)))
    diff = float(np.max(np.abs(ours - ref)))
    tol = rtol * scale
    am_ours = np.argmax(ours, axis=-1)
    am_ref = np.argmax(ref, axis=-1)
    bad_rows = [int(i) for i in np.nonzero(am_ours != am_ref)[0]]
    lines.append(f"rows {ref.shape[0]} vocab {ref.shape[1]}")
    lines.append(f"max|ref| {scale:.6g}  max|ours-ref| {diff:.6g}  tolerance {tol:.6g} (rtol {rtol:g})")
    lines.append(f"relative error {diff / scale if scale else float('inf'):.3g}")
    if bad_rows:
        lines.append(f"argmax differs in rows {bad_rows}: ours {[int(am_ours[i]) for i in bad_rows]} "
                     f"ref {[int(am_ref[i]) for i in bad_rows]}")
    else:
        lines.append("argmax identical in every row")
    ok = diff <= tol and not bad_rows and np.all(np.isfinite(ours))
    lines.append("PASS" if ok else "FAIL")
    return ok, lines


def parse_tokens(text):
    return [int(t) for t in text.replace(" ", "").split(",") if t != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("logits", "generate", "compare"):
        s = sub.add_parser(name)
        s.add_argument("model_dir")
        s.add_argument("--tokens", required=True, help="comma-separated token ids")
        if name == "logits":
            s.add_argument("--out", help="write float64 [n, vocab] .npy here")
        if name == "generate":
            s.add_argument("-n", type=int, required=True, help="number of new tokens")
        if name == "compare":
            s.add_argument("--npy", required=True, help="float32 [n, vocab] logits to check")
            s.add_argument("--rtol", type=float, default=1e-3)
    args = ap.parse_args(argv)
    try:
        model = Model(args.model_dir)
        tokens = parse_tokens(args.tokens)
        if args.cmd == "logits":
            ref = model.logits(tokens)
            if args.out:
                np.save(args.out, ref)
                print(f"wrote {args.out}: float64 {list(ref.shape)}")
            else:
                np.set_printoptions(precision=6, linewidth=120)
                for i, row in enumerate(ref):
                    print(f"row {i}: argmax {int(np.argmax(row))} max {row.max():.6f} first {row[:6]}")
            return 0
        if args.cmd == "generate":
            print(",".join(str(t) for t in model.generate(tokens, args.n)))
            return 0
        ours = np.load(args.npy)
        ok, lines = compare_logits(ours, model.logits(tokens), args.rtol)
        print("\n".join(lines))
        return 0 if ok else 1
    except (ReferenceError, ValueError, OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
