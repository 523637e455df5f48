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
  - matrices in the requested type (f32, f16, bf16, q8_0, q5_0, q4_0, q4_k,
    q6_k, or q4_k_m: llama.cpp's Q4_K_M mix), vectors in F32;
    Q8_0 as ggml's quantize_row_q8_0_ref: per block of 32, d = amax / 127,
    q = round-half-away(x / d), d stored as binary16;
    Q5_0 as ggml's quantize_row_q5_0_ref: d = m / -16,
    q = min(31, trunc(x / d + 16.5));
    Q4_0 as ggml's quantize_row_q4_0_ref: per block of 32, the value of
    largest magnitude m, d = m / -8, q = min(15, trunc(x / d + 8.5));
    Q4_K (blocks of 256, 8 sub-blocks of 32; our own simple quantizer of
    GGUF's layout): per sub-block scale (max - min(min, 0)) / 15 and min
    -min(min, 0), both quantized to 6 bits against the block's binary16 d
    = max scale / 63 and dmin = max min / 63; q = round((x + dmin m) / (d sc));
    Q6_K (blocks of 256, 16 sub-blocks of 16): per sub-block s = (value of
    largest magnitude) / -32, int8 scales against d = (largest s) / -128,
    q = clamp(round(x / (d sc)), -32, 31) + 32.
    A matrix whose rows are not whole blocks of its type falls back as
    llama.cpp's quantizer does, to Q5_0 (for Q4_K) or Q8_0 (for Q6_K).
    q4_k_m: Q4_K, with attn_v and ffn_down of llama.cpp's use_more_bits
    layers and output.weight in Q6_K.
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

GGML = {"f32": 0, "f16": 1, "q4_0": 2, "q5_0": 6, "q8_0": 8, "q4_k": 12, "q6_k": 14, "bf16": 30}
TYPES = sorted(GGML) + ["q4_k_m"]
ALIGN = 32


def gstr(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    fmt = {4: "<I", 6: "<f", 7: "<B", 10: "<Q"}
    body = gstr(value) if vtype == 8 else struct.pack(fmt[vtype], value)
    return gstr(key) + struct.pack("<I", vtype) + body


def is_tokenizer_kv(entry):
    """Whether a kv() entry's key is tokenizer.ggml.* (tokenizer_meta writes those)."""
    return entry[8:8 + len(b"tokenizer.ggml.")] == b"tokenizer.ggml."


def kv_array(key, etype, values):
    if etype == 8:
        body = b"".join(gstr(v) for v in values)
    else:
        body = np.asarray(values, dtype={5: "<i4", 6: "<f4"}[etype]).tobytes()
    return gstr(key) + struct.pack("<IIQ", 9, etype, len(values)) + body


LLAMA3_PATTERN = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                  "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
QWEN2_PATTERN = LLAMA3_PATTERN.replace("\\p{N}{1,3}", "\\p{N}")


def tokenizer_meta(tok_dir, merges=True):
    """tokenizer.ggml.* from a tokenizer.json, as llama.cpp's converter writes
    them: model "llama" (SentencePiece-style BPE with byte fallback: tokens,
    scores, token types, and merges unless merges=False) or "gpt2" (byte-level
    BPE: tokens, token types, merges, and the pre-tokenizer's name)."""
    tj = json.load(open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8"))
    cfg_path = os.path.join(tok_dir, "tokenizer_config.json")
    tc = json.load(open(cfg_path, encoding="utf-8")) if os.path.exists(cfg_path) else {}
    m = tj["model"]
    if m.get("type") != "BPE":
        raise SystemExit(f"{tok_dir}: model type {m.get('type')}: only BPE tokenizers are written")
    vocab = dict(m["vocab"])
    added = {a["content"]: a for a in tj.get("added_tokens", [])}
    for a in added.values():
        vocab[a["content"]] = a["id"]
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    merge_list = [mm if isinstance(mm, str) else " ".join(mm) for mm in m.get("merges", [])]
    spm = bool(m.get("byte_fallback"))
    types = []
    for i, t in enumerate(tokens):
        a = added.get(t)
        if a is not None and a["id"] == i:
            types.append(2 if spm and t == m.get("unk_token") else 3 if a.get("special") else 4)
        elif spm and len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
            types.append(6)
        elif t not in m["vocab"]:
            types.append(5)  # unused id
        else:
            types.append(1)
    meta = [kv("tokenizer.ggml.model", 8, "llama" if spm else "gpt2"),
            kv_array("tokenizer.ggml.tokens", 8, tokens), kv_array("tokenizer.ggml.token_type", 5, types)]
    if spm:
        rank = {}
        for r, mm in enumerate(merge_list):
            rank.setdefault(mm.replace(" ", "", 1), r)
        meta.append(kv_array("tokenizer.ggml.scores", 6, [-float(rank[t]) if t in rank else 0.0 for t in tokens]))
        norm, pre = tj.get("normalizer") or {}, tj.get("pre_tokenizer") or {}
        prefix = any(x.get("type") == "Prepend" for x in norm.get("normalizers", [norm])) or (
            pre.get("type") == "Metaspace" and pre.get("prepend_scheme", "always") != "never")
        meta.append(kv("tokenizer.ggml.add_space_prefix", 7, int(prefix)))
        if m.get("unk_token") in vocab:
            meta.append(kv("tokenizer.ggml.unknown_token_id", 4, vocab[m["unk_token"]]))
    else:
        pre = tj.get("pre_tokenizer") or {}
        splits = [x for x in pre.get("pretokenizers", [pre]) if x.get("type") == "Split"]
        pattern = splits[0]["pattern"].get("Regex") if splits else None
        if pattern is None and pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
            name = "gpt-2"
        elif pattern == LLAMA3_PATTERN:
            name = "llama-bpe"
        elif pattern == QWEN2_PATTERN:
            name = "qwen2"
        else:
            raise SystemExit(f"{tok_dir}: pre-tokenizer not recognised: {json.dumps(pre)[:200]}")
        meta.append(kv("tokenizer.ggml.pre", 8, name))
    if merges and merge_list:
        meta.append(kv_array("tokenizer.ggml.merges", 8, merge_list))

    def name_of(key):
        v = tc.get(key)
        return v.get("content") if isinstance(v, dict) else v

    for key in ("bos", "eos"):
        if name_of(f"{key}_token") in vocab:
            meta.append(kv(f"tokenizer.ggml.{key}_token_id", 4, vocab[name_of(f"{key}_token")]))
    post = tj.get("post_processor") or {}
    tmpl = [x for x in post.get("processors", [post]) if x.get("type") == "TemplateProcessing"]
    single = tmpl[0]["single"] if tmpl else []
    add_bos = tc.get("add_bos_token", bool(single) and "SpecialToken" in single[0])
    add_eos = tc.get("add_eos_token", bool(single) and "SpecialToken" in single[-1])
    meta += [kv("tokenizer.ggml.add_bos_token", 7, int(bool(add_bos))),
             kv("tokenizer.ggml.add_eos_token", 7, int(bool(add_eos)))]
    return meta


def write_vocab_only(tok_dir, out, merges):
    # A vocabulary-only file, as llama.cpp's converter writes with --vocab-only.
    meta = [kv("general.architecture", 8, "llama"), kv("general.alignment", 4, ALIGN)] + tokenizer_meta(tok_dir, merges)
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta)) + b"".join(meta)
    with open(out, "wb") as f:
        f.write(head + b"\0" * ((-len(head)) % ALIGN))


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


def f16_bytes(v):
    return np.asarray(v, dtype=np.float32).astype("<f2").view(np.uint8).reshape(*np.shape(v), 2)


def extreme_codes(w, levels):
    # ggml's Q4_0 (16 levels) / Q5_0 (32) reference quantizers, per block of
    # 32: d = m / -(levels / 2) for the value m of largest magnitude (the
    # first of equals), q = min(levels - 1, trunc(x / d + levels / 2 + 0.5)).
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 32)
    m = x[np.arange(x.shape[0]), np.argmax(np.abs(x), axis=1)]
    d = (m / -(levels / 2)).astype(np.float32)
    inv = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(levels - 1, np.trunc(x * inv[:, None] + np.float32(levels / 2 + 0.5)))
    return d, q.astype(np.uint32)


def q4_0(w):
    d, q = extreme_codes(w, 16)
    blocks = np.zeros((q.shape[0], 18), dtype=np.uint8)
    blocks[:, :2] = f16_bytes(d)
    blocks[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return blocks.tobytes()


def q5_0(w):
    # Low nibbles in qs (elements j and 16 + j share byte j), fifth bits in
    # qh (bit j: element j).
    d, q = extreme_codes(w, 32)
    blocks = np.zeros((q.shape[0], 22), dtype=np.uint8)
    blocks[:, :2] = f16_bytes(d)
    qh = ((q >> 4) << np.arange(32, dtype=np.uint32)).sum(axis=1).astype("<u4")
    blocks[:, 2:6] = qh.view(np.uint8).reshape(-1, 4)
    blocks[:, 6:] = (q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)
    return blocks.tobytes()


def q4_k(w):
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 8, 32)
    lo = np.minimum(x.min(axis=2), 0)
    scale = (x.max(axis=2) - lo) / 15.0
    mins = -lo
    d = (scale.max(axis=1) / 63.0).astype(np.float16).astype(np.float32)
    dmin = (mins.max(axis=1) / 63.0).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(scale / np.where(d > 0, d, 1)[:, None]), 0, 63).astype(np.uint8)
    mq = np.clip(np.rint(mins / np.where(dmin > 0, dmin, 1)[:, None]), 0, 63).astype(np.uint8)
    d1 = d[:, None] * sc.astype(np.float32)
    m1 = dmin[:, None] * mq.astype(np.float32)
    q = np.where(d1[:, :, None] > 0, np.rint((x + m1[:, :, None]) / np.where(d1 > 0, d1, 1)[:, :, None]), 0)
    q = np.clip(q, 0, 15).astype(np.uint8)
    nb = x.shape[0]
    blocks = np.zeros((nb, 144), dtype=np.uint8)
    blocks[:, 0:2] = f16_bytes(d)
    blocks[:, 2:4] = f16_bytes(dmin)
    s = np.zeros((nb, 12), dtype=np.uint8)
    s[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    s[:, 4:8] = (mq[:, 0:4] & 63) | ((mq[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 15) | ((mq[:, 4:8] & 15) << 4)
    blocks[:, 4:16] = s
    qs = q.reshape(nb, 4, 2, 32)  # pairs of sub-blocks share bytes: low nibble, high nibble
    blocks[:, 16:] = (qs[:, :, 0, :] | (qs[:, :, 1, :] << 4)).reshape(nb, 128)
    return blocks.tobytes()


def q6_k(w):
    x = np.ascontiguousarray(w, dtype=np.float32).reshape(-1, 16, 16)
    nb = x.shape[0]
    idx = np.argmax(np.abs(x), axis=2)
    m = np.take_along_axis(x, idx[:, :, None], axis=2)[:, :, 0]
    s = m / -32.0
    j = np.argmax(np.abs(s), axis=1)
    d = (s[np.arange(nb), j] / -128.0).astype(np.float16).astype(np.float32)
    sc = np.clip(np.rint(s / np.where(d != 0, d, 1)[:, None]), -128, 127).astype(np.int8)
    eff = d[:, None] * sc.astype(np.float32)
    q = np.where(eff[:, :, None] != 0, np.rint(x / np.where(eff != 0, eff, 1)[:, :, None]), 0)
    q = (np.clip(q, -32, 31) + 32).astype(np.uint8).reshape(nb, 256)
    blocks = np.zeros((nb, 210), dtype=np.uint8)
    e = np.arange(256)
    h, t, l = e // 128, (e % 128) // 32, e % 32
    ql = np.zeros((nb, 128), dtype=np.uint8)
    qh = np.zeros((nb, 64), dtype=np.uint8)
    for i in range(256):
        pos = 64 * h[i] + l[i] + 32 * (t[i] % 2)
        ql[:, pos] |= (q[:, i] & 15) << (0 if t[i] < 2 else 4)
        qh[:, 32 * h[i] + l[i]] |= (q[:, i] >> 4) << (2 * t[i])
    blocks[:, :128] = ql
    blocks[:, 128:192] = qh
    blocks[:, 192:208] = sc.view(np.uint8)
    blocks[:, 208:210] = f16_bytes(d)
    return blocks.tobytes()


BLOCK = {"q4_0": 32, "q5_0": 32, "q8_0": 32, "q4_k": 256, "q6_k": 256}
FALLBACK = {"q4_k": "q5_0", "q6_k": "q8_0"}  # llama.cpp's llama-quant.cpp
QUANT = {"q4_0": q4_0, "q5_0": q5_0, "q8_0": q8_0, "q4_k": q4_k, "q6_k": q6_k}


def encode(w, typ):
    if w.ndim == 1 or typ == "f32":
        return 0, np.ascontiguousarray(w, dtype="<f4").tobytes()
    if typ == "f16":
        return 1, np.ascontiguousarray(w, dtype="<f2").tobytes()
    if typ == "bf16":
        return 30, f32_to_bf16_bits(w).astype("<u2").tobytes()
    if w.shape[-1] % BLOCK[typ] != 0:
        typ = FALLBACK[typ]
    return GGML[typ], QUANT[typ](w)


def use_more_bits(i, n):
    # llama.cpp's llama-quant.cpp: the first and last eighth, and every third layer between
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(gname, typ, n_layer):
    if typ != "q4_k_m":
        return typ
    if gname == "output.weight":
        return "q6_k"
    if ".attn_v." in gname or ".ffn_down." in gname:
        return "q6_k" if use_more_bits(int(gname.split(".")[1]), n_layer) else "q4_k"
    return "q4_k"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("hf_dir")
    ap.add_argument("out")
    ap.add_argument("--type", choices=TYPES, default="f32")
    ap.add_argument("--vocab-only", action="store_true",
                    help="HF_DIR is a tokenizer directory: write only its tokenizer.ggml.* metadata")
    ap.add_argument("--no-merges", action="store_true",
                    help="SentencePiece-style vocabularies: leave out tokenizer.ggml.merges (scores only, "
                         "as files converted from tokenizer.model)")
    a = ap.parse_args()
    if a.vocab_only:
        return write_vocab_only(a.hf_dir, a.out, not a.no_merges)
    cfg = json.load(open(os.path.join(a.hf_dir, "config.json")))
    weights = {k: v.to_float64().astype(np.float32) for k, v in read_safetensors(os.path.join(a.hf_dir, "model.safetensors"))[0].items()}
    mt = cfg["model_type"]
    if mt == "gpt2":
        return write_gpt2(a, cfg, weights)
    if mt not in ("llama", "mistral", "qwen2"):
        raise SystemExit(f"{mt}: only the Llama family and gpt2 are written")
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
    if os.path.exists(os.path.join(a.hf_dir, "tokenizer.json")):
        meta = [x for x in meta if not is_tokenizer_kv(x)] + tokenizer_meta(a.hf_dir, not a.no_merges)
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
    write_file(a.out, meta, tensors, a.type, cfg["num_hidden_layers"])


def write_file(out, meta, tensors, typ, n_layer):
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta))
    data = bytearray()  # appended in place: a checkpoint of gigabytes is copied once
    for gname, w in tensors:
        gt, raw = encode(w, tensor_type(gname, typ, n_layer))
        head += gstr(gname) + struct.pack("<I", w.ndim) + b"".join(struct.pack("<Q", d) for d in reversed(w.shape))
        head += struct.pack("<IQ", gt, len(data))
        data += raw
        data += b"\0" * ((-len(raw)) % ALIGN)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(out, "wb") as f:
        f.write(head)
        f.write(data)


def write_gpt2(a, cfg, weights):
    # convert_hf_to_gguf.py's GPT2Model: Conv1D weights ([in, out]) transposed
    # to [out, in], the causal-mask buffers dropped, and the tied head written
    # as output.weight, a copy of token_embd.
    nl = cfg.get("n_layer", 12)
    n_embd = cfg.get("n_embd", 768)
    meta = [kv("general.architecture", 8, "gpt2"), kv("general.name", 8, os.path.basename(a.hf_dir.rstrip("/"))),
            kv("general.alignment", 4, ALIGN),
            kv("gpt2.context_length", 4, cfg.get("n_positions", 1024)),
            kv("gpt2.embedding_length", 4, n_embd),
            kv("gpt2.feed_forward_length", 4, cfg.get("n_inner") or 4 * n_embd),
            kv("gpt2.block_count", 4, nl),
            kv("gpt2.attention.head_count", 4, cfg.get("n_head", 12)),
            kv("gpt2.attention.layer_norm_epsilon", 6, cfg.get("layer_norm_epsilon", 1e-5))]
    if cfg.get("activation_function", "gelu_new") != "gelu_new":
        raise SystemExit("gpt2: only activation_function gelu_new is written")
    for k in ("bos_token_id", "eos_token_id"):
        if isinstance(cfg.get(k), int):
            meta.append(kv(f"tokenizer.ggml.{k}", 4, cfg[k]))
    if os.path.exists(os.path.join(a.hf_dir, "tokenizer.json")):
        meta = [x for x in meta if not is_tokenizer_kv(x)] + tokenizer_meta(a.hf_dir, not a.no_merges)
    layer = {"ln_1": "attn_norm", "ln_2": "ffn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    tensors = []
    for name, w in weights.items():
        name = name[len("transformer."):] if name.startswith("transformer.") else name
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue
        if name in ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"):
            gname = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                     "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}[name]
        else:
            parts = name.split(".")  # h.N.<module>.weight|bias
            gname = f"blk.{parts[1]}.{layer['.'.join(parts[2:-1])]}.{parts[-1]}"
        if w.ndim == 2 and gname.startswith("blk."):
            w = np.ascontiguousarray(w.T)
        tensors.append((gname, w))
        if gname == "token_embd.weight":
            tensors.append(("output.weight", w))
    write_file(a.out, meta, tensors, a.type, nl)


if __name__ == "__main__":
    main()
