"""Writes a GGUF file (version 3) from a Hugging Face test checkpoint.

Our own writer, in plain numpy (neither llama.cpp's converter nor the `gguf`
package): it does what llama.cpp's convert_hf_to_gguf.py does for the Llama
family, so that assistgen's GGUF loader is tested against the same layout:
  - metadata general.architecture = llama | qwen2 (mistral -> llama, as the
    converter does; a sliding window is then written as
    llama.attention.sliding_window, which llama.cpp ignores) and the
    `<arch>.*` hyper-parameters, tokenizer.ggml.bos/eos_token_id;
  - tensor names token_embd.weight, blk.N.attn_q.weight, ..., output.weight
    (absent when tied); dimensions innermost first;
  - for arch llama, the rows of q_proj / k_proj (weights and biases) permuted
    per head as LlamaModel.permute does (HF's half-split rotary layout to
    llama.cpp's interleaved one);
  - matrices in the requested type (f32, f16, bf16, q8_0), vectors in F32;
    Q8_0 as ggml's quantize_row_q8_0_ref: per block of 32, d = amax / 127,
    q = round-half-away(x / d), d stored as binary16.
Usage: /usr/bin/python3 tools/make_gguf.py HF_DIR OUT.gguf --type q8_0
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors, f32_to_bf16_bits  # noqa: E402

GGML = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30}
ALIGN = 32


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    fmt = {4: "<I", 6: "<f", 7: "<B", 10: "<Q"}
    body = gstr(value) if vtype == 8 else struct.pack(fmt[vtype], value)
    return gstr(key) + struct.pack("<I", vtype) + body


def permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def q8_0(w):
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0).astype(np.float32)
    v = x * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)
    blocks = np.zeros((x.shape[0], 34), dtype=np.uint8)
    blocks[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    blocks[:, 2:] = q.view(np.uint8)
    return blocks.tobytes()


def encode(w, typ):
    if w.ndim == 1 or typ == "f32":
        return 0, np.ascontiguousarray(w, dtype="<f4").tobytes()
    if typ == "f16":
        return 1, np.ascontiguousarray(w, dtype="<f2").tobytes()
    if typ == "bf16":
        return 30, f32_to_bf16_bits(w).astype("<u2").tobytes()
    return 8, q8_0(w)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--type", choices=sorted(GGML), default="f32")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.hf_dir, "config.json")))
    weights = {k: v.to_float64().astype(np.float32) for k, v in read_safetensors(os.path.join(a.hf_dir, "model.safetensors"))[0].items()}
    mt = cfg["model_type"]
    if mt not in ("llama", "mistral", "qwen2"):
        raise SystemExit(f"{mt}: only the Llama family is written")
    arch = "qwen2" if mt == "qwen2" else "llama"
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    meta = [kv("general.architecture", 8, arch), kv("general.name", 8, os.path.basename(a.hf_dir.rstrip("/"))),
            kv("general.alignment", 4, ALIGN),
            kv(f"{arch}.context_length", 4, cfg["max_position_embeddings"]),
            kv(f"{arch}.embedding_length", 4, cfg["hidden_size"]),
            kv(f"{arch}.block_count", 4, cfg["num_hidden_layers"]),
            kv(f"{arch}.feed_forward_length", 4, cfg["intermediate_size"]),
            kv(f"{arch}.attention.head_count", 4, nh), kv(f"{arch}.attention.head_count_kv", 4, nkv),
            kv(f"{arch}.attention.key_length", 4, hd), kv(f"{arch}.attention.value_length", 4, hd),
            kv(f"{arch}.rope.dimension_count", 4, hd),
            kv(f"{arch}.rope.freq_base", 6, cfg.get("rope_theta", 10000.0)),
            kv(f"{arch}.attention.layer_norm_rms_epsilon", 6, cfg["rms_norm_eps"]),
            kv(f"{arch}.vocab_size", 4, cfg["vocab_size"])]
    rs = cfg.get("rope_scaling") or {}
    rtype = rs.get("rope_type", rs.get("type"))
    if rtype == "linear":
        meta += [kv(f"{arch}.rope.scaling.type", 8, "linear"), kv(f"{arch}.rope.scaling.factor", 6, rs["factor"])]
    elif rtype not in (None, "default"):
        raise SystemExit(f"rope_scaling {rtype}: not written (llama.cpp stores llama3 factors as rope_freqs.weight)")
    if mt == "mistral" and cfg.get("sliding_window", 4096):
        meta.append(kv(f"{arch}.attention.sliding_window", 4, cfg.get("sliding_window", 4096)))
    for k in ("bos_token_id", "eos_token_id"):
        if isinstance(cfg.get(k), int):
            meta.append(kv(f"tokenizer.ggml.{k}", 4, cfg[k]))
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    tensors = []
    for name, w in weights.items():
        if name == "lm_head.weight" and cfg.get("tie_word_embeddings", False):
            continue
        if name in names:
            gname = names[name]
        else:
            parts = name.split(".")  # model.layers.N.<module>.<proj>.weight|bias
            gname = f"blk.{parts[2]}.{layer['.'.join(parts[3:-1])]}.{parts[-1]}"
        if arch == "llama" and ".attn_q." in gname:
            w = permute(w, nh)
        if arch == "llama" and ".attn_k." in gname:
            w = permute(w, nkv)
        tensors.append((gname, w))
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta)
    data = b""
    for gname, w in tensors:
        gt, raw = encode(w, a.type)
        head += gstr(gname) + struct.pack("<I", w.ndim) + b"".join(struct.pack("<Q", d) for d in reversed(w.shape))
        head += struct.pack("<IQ", gt, len(data))
        data += raw + b"\0" * ((-len(raw)) % ALIGN)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(a.out, "wb") as f:
        f.write(head + data)


if __name__ == "__main__":
    main()
