"""Writes the small random test checkpoints and their golden outputs.

  /usr/bin/python3 tools/make_test_models.py [--out tests/data/models] [--only NAME ...]

Each model is a Hugging Face model directory tests/data/models/<name>/
(config.json + model.safetensors, or shards + model.safetensors.index.json)
with HF tensor names and layouts, plus golden.safetensors holding:
  tokens        I32 [n]          a fixed token sequence (same for every model)
  logits        F32 [n, vocab]   tools/hf_reference.py float64 logits, cast to float32
  greedy_prompt I32 [p]          a fixed prompt (same for every model)
  greedy_ids    I32 [16]         16 greedy new tokens (no eos stop) from the reference

The goldens are computed by reading the directory back through
hf_reference.Model, so they use exactly the stored (f16/bf16-rounded) weights.
GPT-2 models are written in GPT2LMHeadModel's layout (Conv1D weights [in, out],
with or without the "transformer." prefix, optionally with the attn.bias /
attn.masked_bias buffers and a tied lm_head.weight copy old checkpoints hold);
gpt2-draft is gpt2-target with layers removed (as distilgpt2 was initialised
from gpt2), so it agrees with the target part of the time. mistral-window also
stores tokens_long / logits_long: a sequence three windows long.
Everything is seeded: running the script again gives byte-identical files.
A seed is re-drawn (seed+1, ...) until every golden row and every greedy step
has top-1 minus top-2 logit > 2e-3 * max|logit| of the row and > 1e-3 * max|logit|
of all rows, greedy_ids hold no eos and at least 6 distinct ids.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import Model  # noqa: E402
from safetensors_io import StoredTensor, f32_to_bf16_bits, write_safetensors  # noqa: E402

TOKENS = [1, 17, 200, 45, 3, 99, 128, 7, 255, 64, 31, 180]
GREEDY_PROMPT = [1, 17, 200, 45, 3, 99]
N_GREEDY = 16
MIN_GAP = 2e-3  # top1 - top2 > MIN_GAP * max|logit of that row|
MIN_GAP_GLOBAL = 1e-3  # and > 1e-3 * max|logit| over all rows: the compare tolerance
MAX_BYTES = 600 * 1024


def llama_config(vocab, hidden, layers, heads, kv_heads, inter, **extra):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "transformers_version": "4.45.0",
    }
    cfg.update(extra)
    return cfg


def gpt2_config(vocab, n_embd, n_layer, n_head, n_positions, **extra):
    """A GPT2LMHeadModel config.json shaped like the hub's gpt2 / distilgpt2 ones."""
    cfg = {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": 1,
        "embd_pdrop": 0.1,
        "eos_token_id": 2,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2",
        "n_ctx": n_positions,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_inner": None,
        "n_layer": n_layer,
        "n_positions": n_positions,
        "resid_pdrop": 0.1,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": vocab,
    }
    cfg.update(extra)
    return cfg


LONG_TOKENS = [1, 17, 200, 45, 3, 99, 128, 7, 255, 64, 31, 180, 12, 90, 4, 77, 230, 5, 140, 66, 199, 8, 41, 250]

SPECS = {
    "llama-gqa": dict(
        seed=1000,
        dtype="F32",
        config=llama_config(256, 64, 2, 8, 2, 160),
    ),
    "llama-tied-bf16": dict(
        seed=2000,
        dtype="BF16",
        out_gain=1.5,
        config=llama_config(
            256, 64, 3, 4, 4, 128,
            tie_word_embeddings=True,
            torch_dtype="bfloat16",
            max_position_embeddings=512,
            rope_theta=500000.0,
            eos_token_id=[2, 3],
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        ),
    ),
    "qwen2-bias": dict(
        seed=3000,
        dtype="F32",
        shards=2,
        config={
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "vocab_size": 256,
            "hidden_size": 48,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "hidden_act": "silu",
            "max_position_embeddings": 256,
            "max_window_layers": 2,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "rope_scaling": None,
            "use_sliding_window": False,
            "sliding_window": 4096,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_cache": True,
            "transformers_version": "4.45.0",
        },
    ),
    "mistral-f16": dict(
        seed=4000,
        dtype="F16",
        config={
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "vocab_size": 256,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "hidden_act": "silu",
            "max_position_embeddings": 256,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
            "sliding_window": None,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "torch_dtype": "float16",
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_cache": True,
            "transformers_version": "4.45.0",
        },
    ),
    "llama-draft": dict(
        seed=5000,
        dtype="F32",
        config=llama_config(256, 32, 1, 4, 2, 64),
    ),
    # Rows of 256: GGUF's K-quants (Q4_K, Q6_K) quantize blocks of 256 along
    # the input dimension (tests/data/gguf, tools/make_gguf.py).
    "llama-256": dict(
        seed=5100,
        dtype="BF16",
        out_gain=2.0,
        embed_scale=0.1,
        config=llama_config(256, 256, 1, 4, 1, 64, tie_word_embeddings=True,
                            torch_dtype="bfloat16"),
    ),
}
SPECS.update({
    "mistral-window": dict(
        seed=7000,
        dtype="F32",
        long_tokens=LONG_TOKENS,
        config={
            "architectures": ["MistralForCausalLM"],
            "model_type": "mistral",
            "vocab_size": 256,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "hidden_act": "silu",
            "max_position_embeddings": 256,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "sliding_window": 8,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_cache": True,
            "transformers_version": "4.45.0",
        },
    ),
    "qwen2-real": dict(
        seed=8000,
        dtype="BF16",
        out_gain=1.5,
        # Qwen2.5-0.5B's config.json, scaled down: tied, bf16, no head_dim key,
        # 7 query heads per kv head, use_sliding_window false with a window set.
        config={
            "architectures": ["Qwen2ForCausalLM"],
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_act": "silu",
            "hidden_size": 56,
            "initializer_range": 0.02,
            "intermediate_size": 160,
            "max_position_embeddings": 32768,
            "max_window_layers": 2,
            "model_type": "qwen2",
            "num_attention_heads": 7,
            "num_hidden_layers": 2,
            "num_key_value_heads": 1,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "sliding_window": 32768,
            "tie_word_embeddings": True,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.40.1",
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": 256,
        },
    ),
    # The hub's gpt2 model.safetensors has no "transformer." prefix and keeps
    # the attn.bias mask buffers; GPT2LMHeadModel.save_pretrained writes the
    # prefix (and older exports a tied lm_head.weight copy).
    "gpt2-target": dict(
        seed=9000,
        dtype="F32",
        gpt2_prefix="",
        gpt2_buffers=True,
        # A tied head repeats the current token unless the layers outweigh
        # the embedding in the residual: small embeddings, large out_gain.
        embed_scale=0.05,
        out_gain=2.0,
        config=gpt2_config(256, 64, 3, 4, 64, n_inner=128),
    ),
})
GPT2_DRAFT = "gpt2-draft"
GPT2_DRAFT_LAYERS = [0, 1]  # of gpt2-target's 3: a 2-layer draft
NOISY_NAME = "llama-gqa-noisy"
NOISY_BASE = "llama-gqa"
NOISY_SEED = 6005  # chosen: seeds 6000-6004 put the first disagreement at step 1-2
NOISY_SCALES = [0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1]
MIN_DISTINCT_GREEDY = 6  # avoid degenerate one-token loops in greedy_ids


# --------------------------------------------------------------- weights ----


def gpt2_tensor_shapes(cfg, prefix="", buffers=False, tied_copy=False):
    """name -> (shape, kind) in GPT2LMHeadModel's layout (Conv1D weights [in, out])."""
    t, h = prefix, cfg["n_embd"]
    inner = cfg.get("n_inner") or 4 * h
    n_pos = cfg["n_positions"]
    out = {t + "wte.weight": ((cfg["vocab_size"], h), "embed"), t + "wpe.weight": ((n_pos, h), "pos")}
    for i in range(cfg["n_layer"]):
        p = f"{t}h.{i}."
        out[p + "ln_1.weight"] = ((h,), "norm")
        out[p + "ln_1.bias"] = ((h,), "bias")
        if buffers:
            out[p + "attn.bias"] = ((1, 1, n_pos, n_pos), "mask")
            out[p + "attn.masked_bias"] = ((), "masked_bias")
        out[p + "attn.c_attn.weight"] = ((h, 3 * h), "conv")
        out[p + "attn.c_attn.bias"] = ((3 * h,), "bias")
        out[p + "attn.c_proj.weight"] = ((h, h), "conv_out")
        out[p + "attn.c_proj.bias"] = ((h,), "bias")
        out[p + "ln_2.weight"] = ((h,), "norm")
        out[p + "ln_2.bias"] = ((h,), "bias")
        out[p + "mlp.c_fc.weight"] = ((h, inner), "conv")
        out[p + "mlp.c_fc.bias"] = ((inner,), "bias")
        out[p + "mlp.c_proj.weight"] = ((inner, h), "conv_out")
        out[p + "mlp.c_proj.bias"] = ((h,), "bias")
    out[t + "ln_f.weight"] = ((h,), "norm")
    out[t + "ln_f.bias"] = ((h,), "bias")
    if tied_copy:
        out["lm_head.weight"] = ((cfg["vocab_size"], h), "tied_copy")
    return out


def tensor_shapes(cfg, spec=None):
    """name -> (shape, kind) in HF layout ([out, in] for nn.Linear weights)."""
    if cfg["model_type"] == "gpt2":
        spec = spec or {}
        return gpt2_tensor_shapes(cfg, spec.get("gpt2_prefix", "transformer."), spec.get("gpt2_buffers", False),
                                  spec.get("gpt2_tied_copy", False))
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    qwen = cfg["model_type"] == "qwen2"
    qkv_bias = qwen or cfg.get("attention_bias", False)
    o_bias = cfg.get("attention_bias", False) and not qwen
    mlp_bias = cfg.get("mlp_bias", False)
    out = {"model.embed_tokens.weight": ((cfg["vocab_size"], h), "embed")}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = ((h,), "norm")
        out[p + "self_attn.q_proj.weight"] = ((nh * hd, h), "proj")
        out[p + "self_attn.k_proj.weight"] = ((nkv * hd, h), "proj")
        out[p + "self_attn.v_proj.weight"] = ((nkv * hd, h), "proj")
        out[p + "self_attn.o_proj.weight"] = ((h, nh * hd), "proj_out")
        if qkv_bias:
            out[p + "self_attn.q_proj.bias"] = ((nh * hd,), "bias")
            out[p + "self_attn.k_proj.bias"] = ((nkv * hd,), "bias")
            out[p + "self_attn.v_proj.bias"] = ((nkv * hd,), "bias")
        if o_bias:
            out[p + "self_attn.o_proj.bias"] = ((h,), "bias")
        out[p + "post_attention_layernorm.weight"] = ((h,), "norm")
        out[p + "mlp.gate_proj.weight"] = ((inter, h), "proj")
        out[p + "mlp.up_proj.weight"] = ((inter, h), "proj")
        out[p + "mlp.down_proj.weight"] = ((h, inter), "proj_out")
        if mlp_bias:
            for n, d in (("gate", inter), ("up", inter), ("down", h)):
                out[p + f"mlp.{n}_proj.bias"] = ((d,), "bias")
    out["model.norm.weight"] = ((h,), "norm")
    if not cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = ((cfg["vocab_size"], h), "head")
    return out


def random_weights(cfg, rng, out_gain=0.5, spec=None):
    """float32 weights. Projections ~ N(0, gain^2 / fan_in) so activations stay O(1)
    and logits have a spread of a few units (argmaxes well separated). out_gain
    scales o_proj/down_proj: a tied model needs a larger one, else the current
    token's own embedding dominates the residual and greedy repeats one token."""
    w = {}
    for name, (shape, kind) in tensor_shapes(cfg, spec).items():
        if kind == "mask":  # GPT-2's causal-mask buffer: lower triangle of ones
            w[name] = np.tril(np.ones(shape, dtype=np.float32))
            continue
        if kind == "masked_bias":
            w[name] = np.asarray(-1e4, dtype=np.float32)
            continue
        if kind == "tied_copy":
            continue  # filled below from the embedding
        if kind == "norm":
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        elif kind == "embed":
            a = (spec or {}).get("embed_scale", 0.3) * rng.standard_normal(shape)
        elif kind == "bias":
            a = 0.1 * rng.standard_normal(shape)
        elif kind == "proj":
            a = rng.standard_normal(shape) / np.sqrt(shape[1])
        elif kind == "proj_out":
            a = out_gain * rng.standard_normal(shape) / np.sqrt(shape[1])
        elif kind == "pos":
            a = 0.1 * rng.standard_normal(shape)
        elif kind == "conv":  # stored [in, out]
            a = rng.standard_normal(shape) / np.sqrt(shape[0])
        elif kind == "conv_out":
            a = out_gain * rng.standard_normal(shape) / np.sqrt(shape[0])
        else:  # head
            a = 2.0 * rng.standard_normal(shape) / np.sqrt(shape[1])
        w[name] = a.astype(np.float32)
    if "lm_head.weight" in tensor_shapes(cfg, spec) and cfg["model_type"] == "gpt2":
        w["lm_head.weight"] = w[next(n for n in w if n.endswith("wte.weight"))].copy()
    return w


def stored(w, dtype):
    if dtype == "F32":
        return StoredTensor("F32", w.astype(np.float32))
    if dtype == "F16":
        return StoredTensor("F16", w.astype(np.float16))
    if dtype == "BF16":
        return StoredTensor("BF16", f32_to_bf16_bits(w).reshape(w.shape))
    raise ValueError(dtype)


def write_model_dir(path, cfg, weights, dtype, shards=1):
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):  # a previous run may have used another layout
        if f.startswith("model") and (f.endswith(".safetensors") or f.endswith(".index.json")):
            os.remove(os.path.join(path, f))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tensors = {name: stored(a, dtype) for name, a in weights.items()}
    meta = {"format": "pt"}
    if shards == 1:
        write_safetensors(os.path.join(path, "model.safetensors"), tensors, meta)
        return
    # HF's split: tensors in order, a new shard when the running size passes total/shards.
    names = list(weights)  # tensor_shapes order: embed, layers..., norm, lm_head
    sizes = {n: tensors[n].array.nbytes for n in names}
    total = sum(sizes.values())
    groups, cur, acc = [], [], 0
    for n in names:
        if cur and acc + sizes[n] > total / shards and len(groups) < shards - 1:
            groups.append(cur)
            cur, acc = [], 0
        cur.append(n)
        acc += sizes[n]
    groups.append(cur)
    weight_map = {}
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(os.path.join(path, fname), {n: tensors[n] for n in group}, meta)
        for n in group:
            weight_map[n] = fname
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------- golden ----


def eos_ids(cfg):
    e = cfg.get("eos_token_id")
    return set(e if isinstance(e, list) else [e])


def min_rel_gap(logits, per_row=True):
    """min over rows of (top1 - top2) / max|logit| (of that row, or of the whole array)."""
    s = np.sort(logits, axis=-1)
    scale = np.max(np.abs(logits), axis=-1) if per_row else np.max(np.abs(logits))
    return float(np.min((s[:, -1] - s[:, -2]) / scale))


GPT2_NAMES = ("gpt2-target", "gpt2-draft")


def golden_for(path, cfg, long_tokens=None):
    model = Model(path)
    logits = model.logits(TOKENS)
    greedy = model.generate(GREEDY_PROMPT, N_GREEDY)
    full = model.logits(GREEDY_PROMPT + greedy)
    # rows len(prompt)-1 .. end-1 are the logits each greedy step took its argmax from
    steps = full[len(GREEDY_PROMPT) - 1 : -1]
    assert [int(t) for t in np.argmax(steps, axis=-1)] == greedy
    info = {
        "gap_golden": min_rel_gap(logits),
        "gap_greedy": min_rel_gap(steps),
        "gap_golden_global": min_rel_gap(logits, per_row=False),
        "gap_greedy_global": min_rel_gap(steps, per_row=False),
        "max_abs_logit": float(np.max(np.abs(logits))),
        "eos_in_greedy": bool(eos_ids(cfg) & set(greedy)),
        "distinct_argmax": len(set(int(t) for t in np.argmax(logits, axis=-1))),
    }
    info["distinct_greedy"] = len(set(greedy))
    ok = (info["gap_golden"] > MIN_GAP and info["gap_greedy"] > MIN_GAP and not info["eos_in_greedy"]
          and min(info["gap_golden_global"], info["gap_greedy_global"]) > MIN_GAP_GLOBAL
          and info["distinct_greedy"] >= MIN_DISTINCT_GREEDY)
    long_logits = None
    if long_tokens is not None:
        long_logits = model.logits(long_tokens)
        info["gap_long"] = min_rel_gap(long_logits)
        ok = ok and info["gap_long"] > MIN_GAP and min_rel_gap(long_logits, per_row=False) > MIN_GAP_GLOBAL
    return ok, logits, greedy, info, long_logits


def write_golden(path, name, logits, greedy, long_tokens=None, long_logits=None):
    tensors = {
        "tokens": np.asarray(TOKENS, dtype=np.int32),
        "logits": logits.astype(np.float32),
        "greedy_prompt": np.asarray(GREEDY_PROMPT, dtype=np.int32),
        "greedy_ids": np.asarray(greedy, dtype=np.int32),
    }
    if long_tokens is not None:
        tensors["tokens_long"] = np.asarray(long_tokens, dtype=np.int32)
        tensors["logits_long"] = long_logits.astype(np.float32)
    meta = {
        "model": name,
        "reference": "tools/hf_reference.py (numpy float64, HF Llama/Mistral/Qwen2 math), cast to float32"
        if name not in GPT2_NAMES else "tools/hf_reference.py (numpy float64, HF GPT-2 math), cast to float32",
        "greedy": f"{N_GREEDY} argmax tokens after greedy_prompt, no eos stop",
    }
    write_safetensors(os.path.join(path, "golden.safetensors"), tensors, meta)


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.startswith("model"))


def build(out_dir, name, spec):
    path = os.path.join(out_dir, name)
    cfg = spec["config"]
    for attempt in range(50):
        seed = spec["seed"] + attempt
        weights = random_weights(cfg, np.random.default_rng(seed), spec.get("out_gain", 0.5), spec)
        write_model_dir(path, cfg, weights, spec["dtype"], spec.get("shards", 1))
        ok, logits, greedy, info, long_logits = golden_for(path, cfg, spec.get("long_tokens"))
        if ok:
            break
        print(f"  {name}: seed {seed} rejected {info}")
    else:
        raise SystemExit(f"{name}: no acceptable seed")
    write_golden(path, name, logits, greedy, spec.get("long_tokens"), long_logits)
    size = dir_bytes(path)
    if size > MAX_BYTES:
        raise SystemExit(f"{name}: weights take {size} bytes > {MAX_BYTES}")
    print(f"{name}: seed {seed}, {size} bytes of weights, greedy {greedy}, "
          + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()))
    return weights, greedy


def agreement(draft_path, target_seq, prompt_len, target_greedy):
    """(common prefix of the two greedy runs, teacher-forced matches) out of len(target_greedy)."""
    draft = Model(draft_path)
    own = draft.generate(GREEDY_PROMPT, len(target_greedy))
    prefix = 0
    while prefix < len(own) and own[prefix] == target_greedy[prefix]:
        prefix += 1
    rows = draft.logits(target_seq)[prompt_len - 1 : -1]
    forced = int(np.sum(np.argmax(rows, axis=-1) == np.asarray(target_greedy)))
    return prefix, forced, own


def build_noisy(out_dir, base_weights, base_greedy):
    path = os.path.join(out_dir, NOISY_NAME)
    cfg = SPECS[NOISY_BASE]["config"]
    target_seq = GREEDY_PROMPT + base_greedy
    for scale in NOISY_SCALES:
        rng = np.random.default_rng(NOISY_SEED)
        weights = {}
        for name, a in base_weights.items():
            spread = float(np.std(a))
            weights[name] = (a + scale * spread * rng.standard_normal(a.shape)).astype(np.float32)
        write_model_dir(path, cfg, weights, "F32")
        ok, logits, greedy, info, _ = golden_for(path, cfg)
        prefix, forced, _ = agreement(path, target_seq, len(GREEDY_PROMPT), base_greedy)
        print(f"  {NOISY_NAME}: noise {scale} x std: greedy common prefix {prefix}/{N_GREEDY}, "
              f"teacher-forced agreement {forced}/{N_GREEDY}, golden ok {ok}")
        if ok and 3 <= prefix < N_GREEDY and 0.3 * N_GREEDY <= forced <= 0.85 * N_GREEDY:
            break
    else:
        raise SystemExit(f"{NOISY_NAME}: no noise scale gives partial agreement")
    write_golden(path, NOISY_NAME, logits, greedy)
    print(f"{NOISY_NAME}: noise {scale} x per-tensor std (seed {NOISY_SEED}), {dir_bytes(path)} bytes, "
          f"greedy {greedy}; vs {NOISY_BASE}: common prefix {prefix}, teacher-forced {forced}/{N_GREEDY}")


def build_gpt2_draft(out_dir, target_weights, target_greedy):
    """gpt2-target's embeddings, final norm and the layers GPT2_DRAFT_LAYERS,
    renumbered, with the "transformer." prefix and a stored tied lm_head copy
    (the other checkpoint flavour than the target's)."""
    path = os.path.join(out_dir, GPT2_DRAFT)
    tcfg = SPECS["gpt2-target"]["config"]
    cfg = dict(tcfg, n_layer=len(GPT2_DRAFT_LAYERS))
    weights = {}
    for name, a in target_weights.items():
        if name.startswith("h."):
            layer, rest = name[2:].split(".", 1)
            if rest.startswith("attn.bias") or rest.startswith("attn.masked_bias"):
                continue
            if int(layer) in GPT2_DRAFT_LAYERS:
                weights[f"transformer.h.{GPT2_DRAFT_LAYERS.index(int(layer))}.{rest}"] = a
        else:
            weights["transformer." + name] = a
    weights["lm_head.weight"] = weights["transformer.wte.weight"].copy()
    write_model_dir(path, cfg, weights, "F32")
    ok, logits, greedy, info, _ = golden_for(path, cfg)
    if not ok:
        raise SystemExit(f"{GPT2_DRAFT}: goldens not well separated {info}")
    write_golden(path, GPT2_DRAFT, logits, greedy)
    prefix, forced, _ = agreement(path, GREEDY_PROMPT + target_greedy, len(GREEDY_PROMPT), target_greedy)
    print(f"{GPT2_DRAFT}: layers {GPT2_DRAFT_LAYERS} of gpt2-target, {dir_bytes(path)} bytes, greedy {greedy}; "
          f"vs gpt2-target: common prefix {prefix}, teacher-forced {forced}/{N_GREEDY}")


def main():
    ap = argparse.ArgumentParser(description="write the test checkpoints and goldens")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "models"))
    ap.add_argument("--only", nargs="*", help="model names (default: all)")
    args = ap.parse_args()
    names = args.only or list(SPECS) + [NOISY_NAME, GPT2_DRAFT]
    base = None
    gpt2_base = None
    for name in names:
        if name == GPT2_DRAFT:
            if gpt2_base is None:
                gpt2_base = build(args.out, "gpt2-target", SPECS["gpt2-target"])
            build_gpt2_draft(args.out, *gpt2_base)
            continue
        if name == NOISY_NAME:
            if base is None:
                base = build(args.out, NOISY_BASE, SPECS[NOISY_BASE])
            build_noisy(args.out, *base)
        elif name in SPECS:
            result = build(args.out, name, SPECS[name])
            if name == NOISY_BASE:
                base = result
            if name == "gpt2-target":
                gpt2_base = result
        else:
            raise SystemExit(f"unknown model {name}")


if __name__ == "__main__":
    main()
