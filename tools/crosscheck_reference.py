"""Second, differently written computation used to check tools/hf_reference.py.

  /usr/bin/python3 tools/crosscheck_reference.py [MODEL_DIR ...]   (default: every tests/data/models/*)

Shares no code with hf_reference.py or safetensors_io.py: it parses the
safetensors header itself and lets torch interpret the bytes (torch.bfloat16 /
torch.float16 / torch.float32), computes in torch float32, applies RoPE as a
complex rotation of (x[i], x[i + d/2]) pairs, derives the llama3 frequencies
element by element, and runs attention head by head with an explicit kv-head
index and a per-row key range for sliding windows (keys max(0, i-w+1)..i).
GPT-2 goes through torch.nn.functional.layer_norm, F.gelu(approximate="tanh")
and torch.addmm on the Conv1D [in, out] weights. It then checks, for each
model directory:
  - its logits against hf_reference's float64 logits (relative error < 1e-4,
    same argmax in every row),
  - the stored golden.safetensors logits against both,
  - greedy_ids against its own greedy decode of greedy_prompt.
Exits 1 if any check fails.
"""

import glob
import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I32": torch.int32}


def read_st(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, t = e["data_offsets"]
        buf = bytearray(blob[base + b : base + t])
        out[name] = torch.frombuffer(buf, dtype=TORCH_DTYPES[e["dtype"]]).reshape(e["shape"]).clone()
    return out


def load_dir(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    if os.path.exists(os.path.join(d, "model.safetensors")):
        raw = read_st(os.path.join(d, "model.safetensors"))
    else:
        index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
        raw = {}
        for shard in sorted(set(index["weight_map"].values())):
            raw.update(read_st(os.path.join(d, shard)))
        assert set(raw) == set(index["weight_map"]), "index and shards disagree"
    return cfg, {k: v.to(torch.float32) for k, v in raw.items()}


def frequencies(cfg, d):
    theta = cfg.get("rope_theta", 10000.0)
    freqs = [theta ** (-(2.0 * i) / d) for i in range(d // 2)]
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        freqs = [f / rs["factor"] for f in freqs]
    elif kind == "llama3":
        out = []
        for f in freqs:
            wl = 2 * math.pi / f
            lo_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
            hi_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
            if wl < hi_wl:
                out.append(f)
            elif wl > lo_wl:
                out.append(f / rs["factor"])
            else:
                s = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / (
                    rs["high_freq_factor"] - rs["low_freq_factor"])
                out.append((1 - s) * f / rs["factor"] + s * f)
        freqs = out
    elif kind not in (None, "default"):
        raise SystemExit(f"rope type {kind} not handled here")
    return torch.tensor(freqs, dtype=torch.float32)


def rope(x, freqs):
    # x: [n, heads, d]; pairs (i, i + d/2) rotate by angle pos * freq_i
    n, _, d = x.shape
    ang = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None, :]
    rot = torch.polar(torch.ones_like(ang), ang)[:, None, :]
    z = torch.complex(x[..., : d // 2], x[..., d // 2 :]) * rot
    return torch.cat([z.real, z.imag], dim=-1)


def norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def gpt2_forward(cfg, w, tokens):
    F = torch.nn.functional
    t = "transformer." if "transformer.wte.weight" in w else ""
    h, nh = cfg["n_embd"], cfg["n_head"]
    d, n, eps = h // nh, len(tokens), cfg.get("layer_norm_epsilon", 1e-5)

    def conv(name, x):
        return torch.addmm(w[name + ".bias"], x, w[name + ".weight"])

    def ln(name, x):
        return F.layer_norm(x, (h,), w[name + ".weight"], w[name + ".bias"], eps)

    x = w[t + "wte.weight"][torch.tensor(tokens)] + w[t + "wpe.weight"][:n]
    for i in range(cfg["n_layer"]):
        p = f"{t}h.{i}."
        q, k, v = conv(p + "attn.c_attn", ln(p + "ln_1", x)).split(h, dim=-1)
        heads = []
        for hq in range(nh):
            sl = slice(hq * d, (hq + 1) * d)
            rows = []
            for r in range(n):  # row r sees keys 0..r
                s = (k[: r + 1, sl] @ q[r, sl]) / math.sqrt(d)
                rows.append(torch.softmax(s, dim=0) @ v[: r + 1, sl])
            heads.append(torch.stack(rows))
        x = x + conv(p + "attn.c_proj", torch.cat(heads, dim=-1))
        x = x + conv(p + "mlp.c_proj", F.gelu(conv(p + "mlp.c_fc", ln(p + "ln_2", x)), approximate="tanh"))
    x = ln(t + "ln_f", x)
    head = w["lm_head.weight"] if cfg.get("tie_word_embeddings", True) is False else w[t + "wte.weight"]
    return (x @ head.T).double()


def layer_window(cfg, layer):
    """Sliding window of `layer` (None: full), following MistralConfig / Qwen2Config."""
    if cfg["model_type"] == "mistral":
        return cfg.get("sliding_window", 4096)
    if cfg["model_type"] == "qwen2" and cfg.get("use_sliding_window", False) and cfg.get("sliding_window"):
        types = cfg.get("layer_types")
        sliding = types[layer] == "sliding_attention" if types else layer >= cfg.get("max_window_layers", 28)
        return cfg["sliding_window"] if sliding else None
    return None


def forward(cfg, w, tokens):
    if cfg["model_type"] == "gpt2":
        return gpt2_forward(cfg, w, tokens)
    F = torch.nn.functional
    qwen = cfg["model_type"] == "qwen2"
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    d = cfg.get("head_dim") or cfg["hidden_size"] // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    qkv_b = qwen or cfg.get("attention_bias", False)
    o_b = (not qwen) and cfg.get("attention_bias", False)
    mlp_b = cfg.get("mlp_bias", False)
    freqs = frequencies(cfg, d)
    n = len(tokens)

    def lin(name, x, bias):
        return F.linear(x, w[name + ".weight"], w[name + ".bias"] if bias else None)

    x = w["model.embed_tokens.weight"][torch.tensor(tokens, dtype=torch.long)]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, w[p + "input_layernorm.weight"], eps)
        q = rope(lin(p + "self_attn.q_proj", h, qkv_b).view(n, nh, d), freqs)
        k = rope(lin(p + "self_attn.k_proj", h, qkv_b).view(n, nkv, d), freqs)
        v = lin(p + "self_attn.v_proj", h, qkv_b).view(n, nkv, d)
        mask = torch.ones(n, n, dtype=torch.bool).tril()
        win = layer_window(cfg, i)
        if win is not None:
            for r in range(n):
                mask[r, : max(0, r - win + 1)] = False
        heads = []
        for hq in range(nh):
            kv = hq // (nh // nkv)
            s = (q[:, hq, :] @ k[:, kv, :].T) * (1.0 / math.sqrt(d))
            s = s.masked_fill(~mask, float("-inf"))
            heads.append(torch.softmax(s, dim=-1) @ v[:, kv, :])
        x = x + lin(p + "self_attn.o_proj", torch.cat(heads, dim=-1), o_b)
        h = norm(x, w[p + "post_attention_layernorm.weight"], eps)
        act = F.silu(lin(p + "mlp.gate_proj", h, mlp_b)) * lin(p + "mlp.up_proj", h, mlp_b)
        x = x + lin(p + "mlp.down_proj", act, mlp_b)
    x = norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return (x @ head.T).double()


def check(d):
    sys.path.insert(0, HERE)
    from hf_reference import Model

    cfg, w = load_dir(d)
    golden = read_st(os.path.join(d, "golden.safetensors"))
    tokens = golden["tokens"].tolist()
    ours = forward(cfg, w, tokens)
    ref = torch.from_numpy(Model(d).logits(tokens))
    stored = golden["logits"].double()
    scale = ref.abs().max().item()
    ok = True
    for label, a, b, tol in (("float32 crosscheck vs float64 reference", ours, ref, 1e-4),
                             ("golden.safetensors vs float64 reference", stored, ref, 1e-6)):
        err = (a - b).abs().max().item() / scale
        same = bool((a.argmax(-1) == b.argmax(-1)).all())
        good = err < tol and same
        ok &= good
        print(f"  {label}: rel err {err:.2e} (< {tol:g}), argmax same {same} -> {'ok' if good else 'FAIL'}")
    seq = golden["greedy_prompt"].tolist()
    for _ in range(len(golden["greedy_ids"])):
        seq.append(int(forward(cfg, w, seq)[-1].argmax()))
    same = seq[len(golden["greedy_prompt"]):] == golden["greedy_ids"].tolist()
    ok &= same
    print(f"  greedy_ids reproduced by the crosscheck: {same}")
    if "tokens_long" in golden:
        long_tokens = golden["tokens_long"].tolist()
        a = forward(cfg, w, long_tokens)
        ref = torch.from_numpy(Model(d).logits(long_tokens))
        scale = ref.abs().max().item()
        err = (a - ref).abs().max().item() / scale
        err_stored = (golden["logits_long"].double() - ref).abs().max().item() / scale
        good = err < 1e-4 and err_stored < 1e-6 and bool((a.argmax(-1) == ref.argmax(-1)).all())
        ok &= good
        print(f"  tokens_long: crosscheck rel err {err:.2e}, stored {err_stored:.2e} -> {'ok' if good else 'FAIL'}")
    return ok


def main():
    dirs = sys.argv[1:] or sorted(glob.glob(os.path.join(HERE, "..", "tests", "data", "models", "*")))
    ok = True
    for d in dirs:
        print(os.path.basename(os.path.normpath(d)))
        ok &= check(d)
    print("ALL OK" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
