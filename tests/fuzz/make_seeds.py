"""Writes the seed corpora of the fuzz targets into corpus/<target>/.

Run from anywhere with Debian's python3 (only the standard library is used):
    /usr/bin/python3 tests/fuzz/make_seeds.py
Seeds are small on purpose (libFuzzer's default max_len follows the largest
seed). Crash reproducers found by fuzzing are added to the same directories
by hand (named crash-*) and are not touched by this script.
"""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
CORPUS = os.path.join(HERE, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- safetensors -------------------------------------------------------------

def safetensors(tensors, metadata=None, header_override=None, length_override=None, tail=b""):
    """tensors: list of (name, dtype, shape, bytes)."""
    header = {}
    blob = b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata is not None:
        header["__metadata__"] = metadata
    text = header_override if header_override is not None else json.dumps(header, separators=(",", ":"))
    text = text.encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    n = len(text) if length_override is None else length_override
    return struct.pack("<Q", n) + text + blob + tail


def write_safetensors_seeds():
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-30, float("inf"))
    out("safetensors", "valid_all_dtypes", safetensors([
        ("a.f32", "F32", [2, 3], f32),
        ("b.f16", "F16", [4], struct.pack("<4H", 0x3C00, 0x8001, 0x7C00, 0x7E00)),
        ("c.bf16", "BF16", [2, 2], struct.pack("<4H", 0x3F80, 0xBF80, 0x7F80, 0x0001)),
        ("d.i8", "I8", [3], b"\x01\xff\x80"),
        ("e.u8", "U8", [0], b""),
        ("f.i32", "I32", [1], struct.pack("<i", -5)),
        ("g.i64", "I64", [1, 1], struct.pack("<q", 1 << 40)),
    ], metadata={"format": "pt"}))
    out("safetensors", "valid_empty_header", safetensors([]))
    out("safetensors", "valid_scalar", safetensors([("s", "F32", [], struct.pack("<f", 2.0))]))
    out("safetensors", "valid_zero_sized", safetensors([("z", "F16", [0, 7], b""), ("w", "U8", [2], b"ab")]))
    out("safetensors", "bad_overlap", safetensors([], header_override=json.dumps({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}), tail=b"123456"))
    out("safetensors", "bad_header_too_long", struct.pack("<Q", 1 << 63) + b"{}      ")
    out("safetensors", "bad_shape_overflow", safetensors([], header_override=json.dumps({
        "a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})))
    out("safetensors", "bad_offsets_wrap", safetensors([], header_override=json.dumps({
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [18446744073709551612, 0]}}), tail=b"1234"))
    out("safetensors", "bad_truncated", safetensors([("a.f32", "F32", [2, 3], f32)])[:-5])


# --- config.json ---------------------------------------------------------------

def write_config_seeds():
    models = os.path.join(DATA, "models")
    for m in sorted(os.listdir(models)):
        src = os.path.join(models, m, "config.json")
        if os.path.isfile(src):
            with open(src, "rb") as f:
                out("config", m, f.read())
    base = {"architectures": ["LlamaForCausalLM"], "vocab_size": 256, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8}
    out("config", "llama3_rope", json.dumps(dict(base, num_key_value_heads=2, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}, eos_token_id=[1, 2], bos_token_id=0)))
    out("config", "linear_rope_dtype", json.dumps(dict(base, rope_scaling={"type": "linear", "factor": 2},
                                                       dtype="bfloat16", head_dim=16)))
    out("config", "qwen2_window", json.dumps({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 32,
                                               "intermediate_size": 64, "num_hidden_layers": 1,
                                               "num_attention_heads": 4, "num_key_value_heads": 1,
                                               "use_sliding_window": True, "sliding_window": 64,
                                               "tie_word_embeddings": True}))
    out("config", "mistral_null_window", json.dumps({"architectures": ["MistralForCausalLM"], "vocab_size": 100,
                                                      "hidden_size": 32, "intermediate_size": 64,
                                                      "num_hidden_layers": 1, "num_attention_heads": 4,
                                                      "sliding_window": None, "rms_norm_eps": 1e-5}))
    out("config", "bad_kv_heads", json.dumps(dict(base, num_key_value_heads=3)))


# --- tokenizer.json ------------------------------------------------------------

def trimmed_tokenizer(name, keep):
    """The golden tokenizer `name` cut to the vocabulary ids < keep (added
    tokens kept) and the merges among them."""
    d = os.path.join(DATA, "tokenizers", name)
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        t = json.load(f)
    m = t["model"]
    vocab = {k: v for k, v in m["vocab"].items() if v < keep}
    for a in t["added_tokens"]:
        vocab.setdefault(a["content"], a["id"])
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"] = vocab
    m["merges"] = merges
    text = json.dumps(t, ensure_ascii=False, separators=(",", ":"))
    extra = ""
    for side in ("tokenizer_config.json", "generation_config.json"):
        p = os.path.join(d, side)
        extra += "\0"
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as f:
                extra += json.dumps(json.load(f), separators=(",", ":"))
    return text + extra


def write_tokenizer_json_seeds():
    for name in ("gpt2-8k", "llama3-8k", "spm-bf", "spm-bf-metaspace"):
        out("tokenizer_json", name, trimmed_tokenizer(name, 300))
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "c": 3, "##b": 4, "ab": 5, "abc": 6, "1": 7, "</w>": 8, "c</w>": 9}
    tiny = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 10, "content": "<eos>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True},
                         {"id": 11, "content": "hey", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": True, "special": False}],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"},
                                                            {"type": "Strip", "strip_left": True, "strip_right": True}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<eos>": {"id": "<eos>", "ids": [10], "tokens": ["<eos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [{"type": "BPEDecoder", "suffix": "</w>"}, {"type": "Strip", "content": " ", "start": 0, "stop": 1}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "[UNK]", "continuing_subword_prefix": None,
                  "end_of_word_suffix": "</w>", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["a b", ["ab", "c"], "c </w>"]},
    }
    out("tokenizer_json", "tiny_components", json.dumps(tiny) + "\0" + json.dumps({"eos_token": "<eos>", "add_eos_token": True}))
    tiny2 = json.loads(json.dumps(tiny))
    tiny2["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": "1"}, {"type": "NFC"}]}
    tiny2["pre_tokenizer"] = {"type": "Metaspace", "replacement": "_", "prepend_scheme": "always", "split": True}
    tiny2["decoder"] = {"type": "Metaspace", "replacement": "_", "prepend_scheme": "always", "split": True}
    tiny2["model"]["continuing_subword_prefix"] = "##"
    tiny2["model"]["end_of_word_suffix"] = None
    out("tokenizer_json", "tiny_metaspace_prefix", json.dumps(tiny2))
    out("tokenizer_json", "bad_id_out_of_range", json.dumps(dict(tiny, added_tokens=[dict(tiny["added_tokens"][0], id=-3)])))


# --- encode / decode ---------------------------------------------------------

def write_codec_seeds():
    texts = [
        "Hello, world! It's 2024 and we're testing 12345 tokens.",
        "  leading and trailing spaces  \n\n\tTabs\r\nCRLF",
        "Ünïcödé — 日本語のテキスト 😀👍🏽 ▁ metaspace",
        "<|endoftext|><s></s><unk><|begin_of_text|> special texts",
        "",
    ]
    for t in range(4):
        for i, text in enumerate(texts):
            out("tokenizer_codec", f"text_{t}_{i}", bytes([t | (4 if i % 2 else 0) | (8 if i == 3 else 0)]) + text.encode())
    out("tokenizer_codec", "invalid_utf8_0", bytes([0]) + b"ok \xff\xfe \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 end \xf0\x9f\x98")
    out("tokenizer_codec", "invalid_utf8_1", bytes([1]) + b"\xe2\x82\xac\xe2\x82 \xc3")
    out("tokenizer_codec", "invalid_utf8_2", bytes([6]) + b"a\xffb\x80c")
    for t in range(4):
        ids = struct.pack("<8i", 0, 1, 2, 3, 100, 255, 259, 300)
        out("tokenizer_codec", f"ids_valid_{t}", bytes([0x20 | t]) + ids)
        out("tokenizer_codec", f"ids_folded_{t}", bytes([0x30 | t | 0x40]) + struct.pack("<6I", 7, 70, 700, 7000, 70000, 0xFFFFFFFF))
    out("tokenizer_codec", "ids_out_of_range", bytes([0x21]) + struct.pack("<3i", 5, -1, 1 << 30))

# --- gguf --------------------------------------------------------------------

def gguf_str(s):
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, v):
    """vtype: GGUF value type id; arrays as (9, (elem_type, [values]))."""
    fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
    if vtype == 8:
        return gguf_str(v)
    if vtype == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gguf_value(et, x) for x in items)
    return struct.pack(fmt[vtype], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: list of (key, type, value); tensors: list of (name, ne, ggml_type, bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        head += gguf_str(k) + struct.pack("<I", t) + gguf_value(t, v)
    data = b""
    for name, ne, gt, raw in tensors:
        head += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", gt, len(data))
        data += raw + b"\0" * ((-len(raw)) % alignment)
    head += b"\0" * ((-len(head)) % alignment)
    return head + data


def write_gguf_seeds():
    q8 = struct.pack("<H", 0x3C00) + bytes(range(32))
    f32 = struct.pack("<4f", 1, -2, 0.5, 3)
    out("gguf", "valid_types", gguf([
        ("general.architecture", 8, "llama"),
        ("llama.block_count", 4, 1),
        ("llama.rope.freq_base", 6, 10000.0),
        ("tokenizer.ggml.tokens", 9, (8, ["a", "b", "<s>"])),
        ("tokenizer.ggml.scores", 9, (6, [0.0, -1.0, 2.5])),
        ("tokenizer.ggml.token_type", 9, (5, [1, 1, 3])),
        ("flag", 7, 1),
        ("big", 10, 1 << 40),
        ("neg", 11, -5),
        ("nested", 9, (9, [(4, [1, 2]), (8, ["x"])])),
    ], [
        ("a.f32", [2, 2], 0, f32),
        ("b.f16", [4], 1, struct.pack("<4H", 0x3C00, 0x8001, 0x7C00, 0x7E00)),
        ("c.bf16", [2], 30, struct.pack("<2H", 0x3F80, 0xBF80)),
        ("d.q8_0", [32, 1], 8, q8),
        ("e.q4_0", [32], 2, bytes(18)),
    ]))
    out("gguf", "valid_v2_align64", gguf([("general.alignment", 4, 64)], [("t", [3], 0, struct.pack("<3f", 1, 2, 3)),
                                                                         ("u", [1, 2], 0, struct.pack("<2f", 4, 5))],
                                         version=2, alignment=64))
    out("gguf", "valid_empty", gguf([], []))
    out("gguf", "bad_alignment", gguf([("general.alignment", 4, 48)], []))
    out("gguf", "bad_string_length", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", (1 << 64) - 1) + b"k")
    out("gguf", "bad_array_length", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gguf_str("k") +
        struct.pack("<IIQ", 9, 10, 1 << 61))
    out("gguf", "bad_tensor_overflow", gguf([], [("t", [1 << 42, 1 << 22], 0, b"")]))
    out("gguf", "bad_offset", gguf([], [("t", [1], 0, struct.pack("<f", 1))])[:-4])
    out("gguf", "bad_type", gguf([], [("t", [1], 99, b"1234")]))


if __name__ == "__main__":
    for target in ("safetensors", "config", "tokenizer_json", "tokenizer_codec", "gguf"):
        d = os.path.join(CORPUS, target)
        if os.path.isdir(d):
            for f in os.listdir(d):
                if not f.startswith("crash-"):
                    os.remove(os.path.join(d, f))
    write_safetensors_seeds()
    write_config_seeds()
    write_tokenizer_json_seeds()
    write_codec_seeds()
    write_gguf_seeds()
