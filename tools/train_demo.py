"""Trains the demo target/draft pairs in models/ on the King James Bible.

Run with Debian's interpreter (it has python3-torch 1.13, numpy, python3-regex):

    /usr/bin/python3 tools/train_demo.py --smoke --out /tmp/kjv-smoke   # 1-2 minute pipeline check

The exact commands that made the shipped pairs (kjv-target-50m / kjv-draft-4m,
the README's pair, and kjv-target / kjv-draft, the small pair the tests use) are
in models/README.md.

Training is resumable: with --checkpoint-every (default 10 minutes) and
--time-budget MIN, a run checkpoints into --work and exits with status 3 when its
budget is spent; the same command again goes on from the checkpoint and gives
the same weights as one uninterrupted run (the batch generator's state is in
the checkpoint too). So a machine that only has short sessions can train in
chunks, as long as --work survives between them.

Steps: extract the verses with Debian's `bible` program (package bible-kjv), train a
byte-level BPE tokenizer (tools/bpe_train.py), train a Llama-architecture target
from scratch, train a small draft partly by distillation from the target, write
both as Hugging Face model directories (config.json, BF16 model.safetensors,
tokenizer files), reload the written files and check they reproduce the in-memory
logits, and print held-out perplexities, draft/target greedy agreement and samples.

The model code follows the math of HF's LlamaForCausalLM (RMSNorm, rotate_half
RoPE, GQA via repeat_kv, SwiGLU MLP) and uses HF's tensor names, so any
HF-compatible loader reproduces it. Everything is seeded; with the same thread
count on the same machine the run is repeatable.
"""

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import time

# libgomp's default spin-waiting at barriers collapses under CPU contention:
# measured at nice 19 on a busy 2-core machine, 2 threads ran at ~50 tok/s with
# the default policy and ~500-650 tok/s with PASSIVE. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe_train  # noqa: E402

EOT = "<|endoftext|>"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# Set by main() from --bf16. Under it, matmuls run in bf16 through oneDNN (AMX or
# AVX-512 BF16 where the CPU has them: ~1 TFLOP/s on one Xeon core, against ~5
# GFLOP/s for torch's f32 path on the reference BLAS); weights, optimizer state,
# norms, softmax and the losses stay f32.
BF16_COMPUTE = False
# Set by main(): when the run started, for --time-budget.
T_START = None


def compute_ctx():
    if BF16_COMPUTE:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- BLAS check

def check_blas():
    """Times a matmul: torch 1.13 from Debian calls whatever libblas.so.3 the
    alternatives system points at, and the reference BLAS is ~25x slower than
    OpenBLAS. Returns GFLOP/s."""
    a = torch.randn(512, 512)
    b = torch.randn(512, 512)
    for _ in range(3):
        a @ b
    t = time.time()
    n = 20
    for _ in range(n):
        a @ b
    gflops = 2 * 512 ** 3 * n / (time.time() - t) / 1e9
    log(f"matmul 512x512: {gflops:.1f} GFLOP/s with {torch.get_num_threads()} threads")
    if gflops < 20:
        log("WARNING: slow BLAS; torch is probably using the reference libblas. Fix with\n"
            "  update-alternatives --set libblas.so.3-x86_64-linux-gnu "
            "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3\n"
            "or run with LD_PRELOAD=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3")
    return gflops


# ----------------------------------------------------------------------------- data

def load_kjv():
    """Returns a list of chapters; each chapter is (book, chapter_number, [verse texts])."""
    exe = shutil.which("bible") or "/usr/bin/bible"
    raw = subprocess.run([exe, "-l100000", "gen1:1-rev22:21"], check=True, capture_output=True,
                         text=True).stdout
    chapters = []
    for line in raw.split("\n"):
        if not line.strip():
            continue
        if line.startswith("  "):
            num, text = line.strip().split(" ", 1)
            if not num.isdigit() or not chapters:
                raise RuntimeError(f"unexpected line from bible: {line!r}")
            chapters[-1][2].append(text.strip())
        else:
            book, num = line.rsplit(" ", 1)
            chapters.append((book, int(num), []))
    nverses = sum(len(c[2]) for c in chapters)
    if len(chapters) != 1189 or nverses != 31102:
        raise RuntimeError(f"expected 1189 chapters / 31102 verses, got {len(chapters)} / {nverses}")
    return chapters


def chapter_text(ch):
    # One verse per line, no verse numbers: generation then reads as running KJV text.
    return "\n".join(ch[2])


def split_chapters(chapters, every):
    """Held-out set: every `every`-th chapter (index % every == every - 1)."""
    train = [c for i, c in enumerate(chapters) if i % every != every - 1]
    held = [c for i, c in enumerate(chapters) if i % every == every - 1]
    return train, held


def token_stream(tok, chapters):
    """<eot> chapter <eot> chapter ... as one long id array."""
    eot = tok.special_ids[EOT]
    ids = []
    for ch in chapters:
        ids.append(eot)
        ids.extend(tok.encode(chapter_text(ch), special=False))
    ids.append(eot)
    return torch.tensor(ids, dtype=torch.long)


# ----------------------------------------------------------------------------- model (HF Llama math)

class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, d = cfg["hidden_size"], cfg["head_dim"]
        self.nh, self.nkv, self.d = cfg["num_attention_heads"], cfg["num_key_value_heads"], d
        self.q_proj = nn.Linear(h, self.nh * d, bias=False)
        self.k_proj = nn.Linear(h, self.nkv * d, bias=False)
        self.v_proj = nn.Linear(h, self.nkv * d, bias=False)
        self.o_proj = nn.Linear(self.nh * d, h, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.nh, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.nkv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.nkv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.nh // self.nkv
        if rep > 1:  # HF repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(2, 3)) / math.sqrt(self.d) + mask
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        out = (probs @ v).transpose(1, 2).reshape(b, t, self.nh * self.d)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, i = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    """The HF Llama forward pass (no KV cache: training and checks only)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        if cfg["tie_word_embeddings"]:
            self.lm_head.weight = self.model.embed_tokens.weight
        d = cfg["head_dim"]
        inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        pos = torch.arange(cfg["max_position_embeddings"], dtype=torch.float32)
        emb = torch.cat([torch.outer(pos, inv_freq)] * 2, dim=-1)
        self.register_buffer("rope_cos", emb.cos(), persistent=False)
        self.register_buffer("rope_sin", emb.sin(), persistent=False)

    def init_weights(self, gen):
        std = 0.02
        resid_std = std / math.sqrt(2 * self.cfg["num_hidden_layers"])
        for name, p in self.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                nn.init.ones_(p)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * resid_std)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, ids):
        t = ids.shape[1]
        x = self.model.embed_tokens(ids)
        cos = self.rope_cos[:t][None, None]
        sin = self.rope_sin[:t][None, None]
        mask = torch.full((t, t), float("-inf")).triu(1)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))

    def hf_state_dict(self):
        """Tensors under HF names; lm_head.weight is left out when tied (as HF saves it)."""
        sd = {k: v.detach() for k, v in self.state_dict().items()}
        if self.cfg["tie_word_embeddings"]:
            sd.pop("lm_head.weight", None)
        return sd

    def load_hf_state_dict(self, sd):
        sd = dict(sd)
        if self.cfg["tie_word_embeddings"]:
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        self.load_state_dict(sd, strict=True)


def count_params(model):
    return sum(p.numel() for p in model.hf_state_dict().values())


def make_config(vocab_size, eot_id, hidden, layers, heads, kv_heads, inter, tied, max_pos):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "max_position_embeddings": max_pos,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "initializer_range": 0.02,
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
        "bos_token_id": eot_id,
        "eos_token_id": eot_id,
        "use_cache": True,
    }


# ----------------------------------------------------------------------------- safetensors

def bf16_round(t):
    """f32 -> bf16 (round to nearest even) -> f32."""
    return t.detach().float().to(torch.bfloat16).float()


def write_safetensors(path, tensors, metadata=None):
    """Writes BF16 safetensors: u64 LE header length, JSON header padded with
    spaces to a multiple of 8, then the tensor bytes in header order."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().float().contiguous().to(torch.bfloat16)
        data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Reads a BF16/F32 safetensors file into f32 tensors, checking the layout."""
    with open(path, "rb") as f:
        buf = f.read()
    (hlen,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = buf[base + begin: base + end]
        n = int(np.prod(info["shape"])) if info["shape"] else 1
        if info["dtype"] == "BF16":
            if len(raw) != 2 * n:
                raise ValueError(f"{path}: {name}: size mismatch")
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif info["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4").copy()
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    if base + max(i["data_offsets"][1] for k, i in header.items() if k != "__metadata__") != len(buf):
        raise ValueError(f"{path}: trailing or missing bytes")
    return out


def save_model_dir(out_dir, model, tok_json_path, max_len, extra_meta=None):
    os.makedirs(out_dir, exist_ok=True)
    cfg = model.cfg
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"], "do_sample": False}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": None,
        "pad_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2)
        f.write("\n")
    shutil.copyfile(tok_json_path, os.path.join(out_dir, "tokenizer.json"))
    meta = {"format": "pt"}
    meta.update(extra_meta or {})
    write_safetensors(os.path.join(out_dir, "model.safetensors"), model.hf_state_dict(), meta)


def load_model_dir(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    m = LlamaForCausalLM(cfg)
    m.load_hf_state_dict(read_safetensors(os.path.join(d, "model.safetensors")))
    m.eval()
    return m


# ----------------------------------------------------------------------------- training

def lr_at(step, steps, peak, warmup, min_ratio=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(model, lr, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)


class OutOfTime(Exception):
    """The --time-budget ran out; the checkpoint holds everything needed to go on."""


def optimizer_step(model, opt, loss, lr):
    """One AdamW step at learning rate lr, gradients clipped at norm 1."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def save_checkpoint(path, state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint


def train(model, stream, args, steps, peak_lr, gen, name, teacher=None, ce_weight=1.0):
    """AdamW + warmup/cosine, f32 weights. With a teacher the loss is
    ce_weight * CE + (1 - ce_weight) * KL(teacher || model).

    Resumable: every --checkpoint-every minutes (and when --time-budget runs out)
    the model, the optimizer, the step and the batch generator's state go to
    <work>/<name>.ckpt; a later run with the same arguments picks up from there and
    draws the same batches an uninterrupted run would have."""
    opt = make_optimizer(model, peak_lr, args.weight_decay)
    ctx, bsz = args.ctx, args.batch
    n = stream.numel() - ctx - 1
    ckpt_path = os.path.join(args.work, f"{name}.ckpt")
    start, tokens, spent, ema = 0, 0, 0.0, None
    if os.path.exists(ckpt_path):
        st = torch.load(ckpt_path)
        if st["steps"] != steps or st["batch"] != bsz or st["ctx"] != ctx:
            raise RuntimeError(f"{ckpt_path} was made with steps/batch/ctx {st['steps']}/{st['batch']}/{st['ctx']}, "
                               f"not {steps}/{bsz}/{ctx}; remove it to start over")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        start, tokens, spent, ema = st["step"], st["tokens"], st["seconds"], st["ema"]
        log(f"{name}: resumed from {ckpt_path} at step {start}/{steps} ({spent / 60:.1f} min trained so far)")

    def checkpoint(step):
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                                    "step": step, "tokens": tokens, "seconds": spent + time.time() - t0,
                                    "ema": ema, "steps": steps, "batch": bsz, "ctx": ctx})

    model.train()
    t0 = time.time()
    last_ckpt = t0
    for step in range(start, steps):
        lr = lr_at(step, steps, peak_lr, args.warmup)
        starts = torch.randint(0, n, (bsz,), generator=gen)
        batch = torch.stack([stream[s:s + ctx + 1] for s in starts.tolist()])
        x, y = batch[:, :-1], batch[:, 1:]
        with compute_ctx():
            logits = model(x).float()
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(x).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss = ce
        kl = None
        if teacher is not None:
            t_logp = F.log_softmax(t_logits, dim=-1)
            s_logp = F.log_softmax(logits, dim=-1)
            kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()
            loss = ce_weight * ce + (1 - ce_weight) * kl
        optimizer_step(model, opt, loss, lr)
        tokens += x.numel()
        ema = ce.item() if ema is None else 0.95 * ema + 0.05 * ce.item()
        now = time.time()
        if step % args.log_every == 0 or step == steps - 1:
            el = now - t0
            rate = (step + 1 - start) * x.numel() / el
            eta = (steps - step - 1) * el / (step + 1 - start)
            extra = f" kl {kl.item():.3f}" if kl is not None else ""
            log(f"{name} step {step + 1}/{steps} lr {lr:.2e} ce {ce.item():.3f} (ema {ema:.3f}){extra} "
                f"{rate:.0f} tok/s eta {eta / 60:.1f} min")
        if step + 1 < steps:
            if args.time_budget and now - T_START > 60 * args.time_budget:
                checkpoint(step + 1)
                raise OutOfTime(f"{name}: --time-budget of {args.time_budget} min used at step {step + 1}/{steps}; "
                                f"checkpoint in {ckpt_path}: run the same command again to go on")
            if args.checkpoint_every and now - last_ckpt > 60 * args.checkpoint_every:
                checkpoint(step + 1)
                last_ckpt = now
    if (args.checkpoint_every or args.time_budget) and start < steps:
        checkpoint(steps)  # a run stopped later (say, in the draft's training) skips this loop
    model.eval()
    return {"steps": steps, "tokens": tokens, "seconds": spent + time.time() - t0,
            "batch": bsz, "ctx": ctx, "peak_lr": peak_lr, "bf16_compute": BF16_COMPUTE}


@torch.no_grad()
def perplexity(model, stream, ctx, max_windows=None):
    """exp(mean NLL) over non-overlapping windows, each predicted from its own start."""
    model.eval()
    nll, count = 0.0, 0
    w = 0
    for s in range(0, stream.numel() - 1, ctx):
        chunk = stream[s:s + ctx + 1]
        if chunk.numel() < 2:
            break
        x, y = chunk[None, :-1], chunk[None, 1:]
        with compute_ctx():
            logits = model(x).float()
        nll += F.cross_entropy(logits[0], y[0], reduction="sum").item()
        count += y.numel()
        w += 1
        if max_windows and w >= max_windows:
            break
    return math.exp(nll / count), count


@torch.no_grad()
def greedy_agreement(draft, target, stream, ctx, max_windows=None):
    """Fraction of held-out positions where draft and target argmax agree
    (teacher-forced): a proxy for the greedy acceptance rate."""
    agree, count, w = 0, 0, 0
    for s in range(0, stream.numel() - 1, ctx):
        x = stream[None, s:s + ctx]
        if x.numel() < 2:
            break
        with compute_ctx():
            a = draft(x).float().argmax(-1)
            b = target(x).float().argmax(-1)
        agree += (a == b).sum().item()
        count += a.numel()
        w += 1
        if max_windows and w >= max_windows:
            break
    return agree / count


@torch.no_grad()
def greedy(model, tok, prompt, n):
    ids = tok.encode(prompt)
    eot = tok.special_ids[EOT]
    limit = model.cfg["max_position_embeddings"]
    for _ in range(n):
        if len(ids) >= limit:
            break
        with compute_ctx():
            nxt = int(model(torch.tensor([ids]))[0, -1].float().argmax())
        ids.append(nxt)
        if nxt == eot:
            break
    return tok.decode(ids)


@torch.no_grad()
def check_reload(model, out_dir, stream):
    """Reloads the written directory with our own reader and compares logits with
    the in-memory model: exactly (bf16-rounded weights) and loosely (f32 weights)."""
    loaded = load_model_dir(out_dir)
    x = stream[None, 1000:1000 + 64]
    ref_f32 = model(x)
    rounded = LlamaForCausalLM(model.cfg)
    rounded.load_hf_state_dict({k: bf16_round(v) for k, v in model.hf_state_dict().items()})
    rounded.eval()
    ref_bf16 = rounded(x)
    got = loaded(x)
    d_exact = (got - ref_bf16).abs().max().item()
    d_f32 = (got - ref_f32).abs().max().item()
    argmax_same = (got.argmax(-1) == ref_f32.argmax(-1)).float().mean().item()
    log(f"reload {out_dir}: max|logit diff| vs bf16-rounded model {d_exact:.2e}, vs f32 model {d_f32:.3f}, "
        f"argmax agreement with f32 {argmax_same:.3f}")
    if d_exact > 1e-4:
        raise RuntimeError(f"{out_dir}: reloaded logits differ from the bf16-rounded model by {d_exact}")
    return {"max_diff_vs_bf16_rounded": d_exact, "max_diff_vs_f32": d_f32, "argmax_agreement_vs_f32": argmax_same}


# ----------------------------------------------------------------------------- sequence-level distillation

def verse_starts(ids, tok):
    """Positions in the token list ids that follow a newline or <|endoftext|>
    (the starts of verses and chapters), short of the last 40 tokens."""
    nl = tok.encode("\n", special=False)[0]
    eot = tok.special_ids[EOT]
    return [i + 1 for i, x in enumerate(ids[:-40]) if x == nl or x == eot]


def seq_kd_prompts(ids, starts, seed, count, total_len):
    """count prompts of 2-16 tokens taken from the token list ids at the given
    starts, each asking for total_len - len(prompt) greedy tokens."""
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        s = rng.choice(starts)
        n = rng.randint(2, 16)
        out.append({"tokens": ids[s:s + n], "max_new_tokens": total_len - n, "greedy": True})
    return out


def seq_kd_data(args, tok, stream, target_dir, exclude):
    """The target's greedy continuations of training-text prefixes, generated by
    our own CLI (`assistgen batch`: the shipped bf16 target, batched, each
    sequence exactly as it decodes alone). Chunk i (1-based) draws its prompts
    with seed i and is cached in --work, so a stopped run does not redo it.
    Sequences whose prompt begins with `exclude` (the README's prompt) are left
    out, so the demo's own continuation is never in the draft's training data."""
    seqs = []
    ids = stream.tolist()
    starts = verse_starts(ids, tok)
    for i, count in enumerate([int(c) for c in args.seq_kd_chunks.split(",")], start=1):
        pfile = os.path.join(args.work, f"seqkd-{i}.prompts.jsonl")
        ofile = os.path.join(args.work, f"seqkd-{i}.jsonl")
        prompts = seq_kd_prompts(ids, starts, i, count, args.seq_kd_len)
        if not os.path.exists(ofile):
            with open(pfile, "w") as f:
                for pr in prompts:
                    f.write(json.dumps(pr) + "\n")
            log(f"seq-kd chunk {i}: {count} greedy continuations from {target_dir} ({args.assistgen} batch)")
            subprocess.run([args.assistgen, "batch", "-m", target_dir, "--prompts", pfile, "--out", ofile + ".tmp",
                            "--max-batch", "32", "-t", str(args.threads)], check=True)
            os.replace(ofile + ".tmp", ofile)
        with open(ofile) as f:
            for line in f:
                o = json.loads(line)
                if "ids" not in o:
                    raise RuntimeError(f"{ofile}: line {o.get('line')}: {o.get('error')}")
                p = prompts[o["index"]]["tokens"]
                if p[:len(exclude)] != exclude:
                    seqs.append((p, o["ids"]))
    log(f"seq-kd: {len(seqs)} sequences ({args.seq_kd_exclude!r} prefixes left out)")
    return seqs


def train_seq_kd(model, seqs, args, gen):
    """Fine-tunes the draft on the target's greedy continuations: cross-entropy
    on the generated positions only (the prompt is data, not the target's
    choice). For greedy decoding this trains exactly what acceptance counts:
    the draft's argmax agreeing with the target's on the target's own text."""
    length = args.seq_kd_len
    x = torch.zeros(len(seqs), length, dtype=torch.long)
    y = torch.full((len(seqs), length), -100, dtype=torch.long)
    for i, (p, g) in enumerate(seqs):
        s = (p + g)[:length + 1]
        n = len(s) - 1
        x[i, :n] = torch.tensor(s[:-1])
        lab = torch.tensor(s[1:])
        lab[:len(p) - 1] = -100
        y[i, :n] = lab
    bsz = 32
    steps = int(args.seq_kd_epochs * len(seqs) / bsz)
    opt = make_optimizer(model, args.seq_kd_lr, args.weight_decay)
    model.train()
    t0 = time.time()
    agree = None
    for step in range(steps):
        lr = lr_at(step, steps, args.seq_kd_lr, 20)
        idx = torch.randint(0, len(seqs), (bsz,), generator=gen)
        with compute_ctx():
            logits = model(x[idx]).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1), ignore_index=-100)
        optimizer_step(model, opt, loss, lr)
        if step % args.log_every == 0 or step == steps - 1:
            mask = y[idx] != -100
            agree = ((logits.argmax(-1) == y[idx]) & mask).sum().item() / mask.sum().item()
            log(f"draft seq-kd step {step + 1}/{steps} lr {lr:.2e} ce {loss.item():.3f} "
                f"batch agreement {agree:.3f} ({time.time() - t0:.0f} s)")
    model.eval()
    return {"sequences": len(seqs), "generated_tokens": sum(len(g) for _, g in seqs), "steps": steps,
            "epochs": args.seq_kd_epochs, "peak_lr": args.seq_kd_lr, "seconds": time.time() - t0,
            "last_batch_agreement": agree}


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "models"), help="writes kjv-target/ and kjv-draft/ here")
    ap.add_argument("--work", default="/tmp/train_demo_work", help="scratch dir (tokenizer, checkpoints)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--heldout-every", type=int, default=50, help="hold out every N-th chapter")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-pos", type=int, default=512, help="max_position_embeddings written to config.json")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--target-steps", type=int, default=500)
    ap.add_argument("--target-lr", type=float, default=1.5e-3)
    ap.add_argument("--target-layers", type=int, default=6)
    ap.add_argument("--target-hidden", type=int, default=384)
    ap.add_argument("--target-heads", type=int, default=6)
    ap.add_argument("--target-kv-heads", type=int, default=2)
    ap.add_argument("--target-inter", type=int, default=1024)
    ap.add_argument("--draft-steps", type=int, default=300)
    ap.add_argument("--draft-lr", type=float, default=3e-3)
    ap.add_argument("--draft-layers", type=int, default=2)
    ap.add_argument("--draft-hidden", type=int, default=128)
    ap.add_argument("--draft-heads", type=int, default=4)
    ap.add_argument("--draft-kv-heads", type=int, default=2)
    ap.add_argument("--draft-inter", type=int, default=384)
    ap.add_argument("--draft-ce-weight", type=float, default=0.25,
                    help="draft loss = w * CE + (1 - w) * KL(target || draft); 1 = no distillation")
    ap.add_argument("--reuse-target", action="store_true",
                    help="load the target from <work>/kjv-target instead of training it")
    ap.add_argument("--eval-windows", type=int, default=0, help="cap on eval windows (0 = all)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--bf16", action="store_true",
                    help="run matmuls in bf16 (torch.autocast on oneDNN); weights and optimizer stay f32")
    ap.add_argument("--tokenizer", help="use this tokenizer.json instead of training one (must be the one "
                    "tools/bpe_train.py makes from the same chapters, e.g. models/kjv-target/tokenizer.json)")
    ap.add_argument("--target-name", default="kjv-target", help="directory name of the target under --out")
    ap.add_argument("--draft-name", default="kjv-draft", help="directory name of the draft under --out")
    ap.add_argument("--seq-kd-chunks", default="",
                    help="after distillation, fine-tune the draft on the target's greedy continuations of this many "
                    "training-text prefixes per chunk (comma-separated counts; empty = no such stage)")
    ap.add_argument("--seq-kd-len", type=int, default=128, help="prompt + continuation length of those sequences")
    ap.add_argument("--seq-kd-epochs", type=float, default=2.0)
    ap.add_argument("--seq-kd-lr", type=float, default=1e-3)
    ap.add_argument("--seq-kd-exclude", default="And God said",
                    help="prefixes that begin with this text (the README's prompt) are not used")
    ap.add_argument("--assistgen", default=os.path.join(REPO, "build", "tools", "assistgen", "assistgen"),
                    help="the CLI that generates the target's continuations for --seq-kd-chunks")
    ap.add_argument("--checkpoint-every", type=float, default=10.0, help="minutes between checkpoints (0 = none)")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="minutes this run may train before it checkpoints and exits with status 3 "
                    "(0 = no limit); the same command resumes")
    ap.add_argument("--smoke", action="store_true", help="tiny settings to check the pipeline in ~1-2 minutes")
    args = ap.parse_args()
    if args.smoke:
        args.target_steps, args.draft_steps, args.warmup = 12, 8, 3
        args.batch, args.ctx, args.log_every, args.eval_windows = 8, 128, 2, 8
        args.target_layers = 2

    global BF16_COMPUTE, T_START
    T_START = time.time()
    BF16_COMPUTE = args.bf16
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, args {vars(args)}")
    blas_gflops = check_blas()
    os.makedirs(args.work, exist_ok=True)
    t_start = time.time()

    chapters = load_kjv()
    train_ch, held_ch = split_chapters(chapters, args.heldout_every)
    log(f"{len(chapters)} chapters: {len(train_ch)} train, {len(held_ch)} held out "
        f"({', '.join(f'{b} {n}' for b, n, _ in held_ch[:4])}, ...)")

    t = time.time()
    tok_path = os.path.join(args.work, "tokenizer.json")
    if args.tokenizer:
        shutil.copyfile(args.tokenizer, tok_path)
        merges = bpe_train.Tokenizer.load(tok_path).merges
    else:
        token_bytes, merges = bpe_train.train_bpe([chapter_text(c) for c in train_ch], args.vocab, [EOT])
        bpe_train.Tokenizer(token_bytes, merges, [EOT]).save(tok_path)
    tok = bpe_train.Tokenizer.load(tok_path)  # encode with exactly what was written
    eot = tok.special_ids[EOT]
    log(f"BPE: {tok.vocab_size} tokens ({len(merges)} merges) in {time.time() - t:.1f}s, <|endoftext|> = {eot}")
    train_stream = token_stream(tok, train_ch)
    held_stream = token_stream(tok, held_ch)
    nchars = sum(len(chapter_text(c)) for c in train_ch)
    log(f"train stream {train_stream.numel()} tokens ({nchars / train_stream.numel():.2f} chars/token), "
        f"held-out {held_stream.numel()} tokens")

    report = {"seed": args.seed, "threads": args.threads, "blas_gflops": blas_gflops, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "vocab": tok.vocab_size, "train_tokens": train_stream.numel(),
              "heldout_tokens": held_stream.numel(), "heldout": f"every {args.heldout_every}th chapter"}
    gen = torch.Generator().manual_seed(args.seed)
    ev = args.eval_windows or None

    # --- target
    tcfg = make_config(tok.vocab_size, eot, args.target_hidden, args.target_layers, args.target_heads,
                       args.target_kv_heads, args.target_inter, False, args.max_pos)
    target_work = os.path.join(args.work, args.target_name)
    if args.reuse_target:
        target = load_model_dir(target_work)
        with open(os.path.join(target_work, "train_report.json")) as f:
            report["target"] = json.load(f)
        log("target reloaded from", target_work)
    else:
        target = LlamaForCausalLM(tcfg)
        target.init_weights(gen)
        log(f"target: {count_params(target)} params")
        info = train(target, train_stream, args, args.target_steps, args.target_lr, gen, "target")
        info["params"] = count_params(target)
        info["heldout_ppl"], _ = perplexity(target, held_stream, args.ctx, ev)
        info["train_ppl_sample"], _ = perplexity(target, train_stream, args.ctx, ev or 20)
        log(f"target held-out ppl {info['heldout_ppl']:.2f} (train sample {info['train_ppl_sample']:.2f})")
        save_model_dir(target_work, target, tok_path, args.max_pos)
        with open(os.path.join(target_work, "train_report.json"), "w") as f:
            json.dump(info, f, indent=2)
        report["target"] = info

    # --- draft
    dcfg = make_config(tok.vocab_size, eot, args.draft_hidden, args.draft_layers, args.draft_heads,
                       args.draft_kv_heads, args.draft_inter, True, args.max_pos)
    draft = LlamaForCausalLM(dcfg)
    draft.init_weights(gen)
    log(f"draft: {count_params(draft)} params")
    teacher = target if args.draft_ce_weight < 1 else None
    info = train(draft, train_stream, args, args.draft_steps, args.draft_lr, gen, "draft", teacher,
                 args.draft_ce_weight)
    info["params"] = count_params(draft)
    info["ce_weight"] = args.draft_ce_weight
    info["heldout_ppl"], _ = perplexity(draft, held_stream, args.ctx, ev)
    info["train_ppl_sample"], _ = perplexity(draft, train_stream, args.ctx, ev or 20)
    log(f"draft held-out ppl {info['heldout_ppl']:.2f} (train sample {info['train_ppl_sample']:.2f})")
    if args.seq_kd_chunks:
        seqs = seq_kd_data(args, tok, train_stream, target_work,
                           tok.encode(args.seq_kd_exclude, special=False))
        info["seq_kd"] = train_seq_kd(draft, seqs, args, torch.Generator().manual_seed(args.seed + 7))
        info["heldout_ppl"], _ = perplexity(draft, held_stream, args.ctx, ev)
        info["train_ppl_sample"], _ = perplexity(draft, train_stream, args.ctx, ev or 20)
        log(f"draft after seq-kd: held-out ppl {info['heldout_ppl']:.2f} "
            f"(train sample {info['train_ppl_sample']:.2f})")
    report["draft"] = info

    # --- write, reload, sample
    for name, m in ((args.target_name, target), (args.draft_name, draft)):
        d = os.path.join(args.out, name)
        save_model_dir(d, m, tok_path, args.max_pos)
        report[name] = {"reload": check_reload(m, d, held_stream),
                        "safetensors_bytes": os.path.getsize(os.path.join(d, "model.safetensors"))}
    # The samples come from the reloaded (bf16) files: what a user of models/ gets.
    for name in (args.target_name, args.draft_name):
        m = load_model_dir(os.path.join(args.out, name))
        text = greedy(m, tok, "And God said", 60)
        report[name]["sample"] = text
        log(f"{name} greedy sample:\n{text}\n")
    # Teacher-forced argmax agreement of the shipped (bf16) files on held-out text.
    report["draft"]["greedy_agreement_heldout"] = greedy_agreement(
        load_model_dir(os.path.join(args.out, args.draft_name)), load_model_dir(os.path.join(args.out, args.target_name)),
        held_stream, args.ctx, ev)
    log(f"draft/target greedy agreement on held-out text: {report['draft']['greedy_agreement_heldout']:.3f}")
    report["total_seconds"] = time.time() - t_start
    with open(os.path.join(args.work, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    log(f"done in {report['total_seconds'] / 60:.1f} min; report in {os.path.join(args.work, 'report.json')}")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    try:
        main()
    except OutOfTime as e:
        log(str(e))
        sys.exit(3)
