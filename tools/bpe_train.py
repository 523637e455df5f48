"""Byte-level BPE (GPT-2 style) trainer and encoder, written for the demo models.

Produces a Hugging Face tokenizer.json that any HF-compatible tokenizer
(Rust `tokenizers`, tokenizers.js, assistgen's C++ tokenizer) loads as:
no normalizer, ByteLevel pre-tokenizer (GPT-2 regex, no prefix space),
BPE model over GPT-2's byte-to-unicode alphabet, ByteLevel decoder, and one
special token used as both bos and eos.

Needs Debian's python3-regex (`import regex`) for the \\p{L} / \\p{N} classes of
the GPT-2 pre-tokenizer pattern; Python's `re` cannot express them.
"""

import heapq
import json
from collections import Counter

import regex

# The pre-tokenizer pattern of GPT-2 (and of HF's ByteLevel with use_regex=true).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKENIZE = regex.compile(GPT2_PATTERN)


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_UNICODE = bytes_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}


def pretokenize(text):
    """Splits text the way HF's ByteLevel pre-tokenizer does (before byte mapping)."""
    return _PRETOKENIZE.findall(text)


def train_bpe(texts, vocab_size, special_tokens):
    """Learns merges until the vocabulary (256 bytes + merges + specials) has vocab_size entries.

    Returns (token_bytes, merges): token_bytes[id] is the byte string of token id
    (ids 0..255 are the single bytes, in byte order), merges is a list of
    (left_id, right_id) in rank order; merge i creates token 256 + i. Special
    tokens take the last ids and are not part of token_bytes.

    Ties between equally frequent pairs go to the smallest (left_id, right_id),
    so training is deterministic.
    """
    num_merges = vocab_size - 256 - len(special_tokens)
    if num_merges < 0:
        raise ValueError("vocab_size too small for the byte alphabet and the special tokens")

    word_counts = Counter()
    for text in texts:
        word_counts.update(pretokenize(text))
    words = [list(w.encode("utf-8")) for w in word_counts]
    counts = list(word_counts.values())

    pair_counts = Counter()
    pair_where = {}
    for wi, (w, c) in enumerate(zip(words, counts)):
        for p in zip(w, w[1:]):
            pair_counts[p] += c
            pair_where.setdefault(p, set()).add(wi)

    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    token_bytes = [bytes([b]) for b in range(256)]
    merges = []
    while len(merges) < num_merges and heap:
        neg, pair = heapq.heappop(heap)
        current = pair_counts.get(pair, 0)
        if current <= 0:
            continue
        if -neg != current:  # stale heap entry: re-queue with the live count
            heapq.heappush(heap, (-current, pair))
            continue
        new_id = len(token_bytes)
        token_bytes.append(token_bytes[pair[0]] + token_bytes[pair[1]])
        merges.append(pair)
        a, b = pair
        touched = set()
        for wi in sorted(pair_where.pop(pair, ())):
            w = words[wi]
            c = counts[wi]
            if len(w) < 2:
                continue
            merged = []
            i = 0
            hit = False
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    merged.append(new_id)
                    i += 2
                    hit = True
                else:
                    merged.append(w[i])
                    i += 1
            if not hit:
                continue
            for p in zip(w, w[1:]):
                pair_counts[p] -= c
                touched.add(p)
            for p in zip(merged, merged[1:]):
                pair_counts[p] += c
                pair_where.setdefault(p, set()).add(wi)
                touched.add(p)
            words[wi] = merged
        pair_counts.pop(pair, None)
        for p in touched:
            if p != pair and pair_counts.get(p, 0) > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    return token_bytes, merges


def token_string(tb):
    """The vocabulary key of a token: its bytes through GPT-2's byte-to-unicode map."""
    return "".join(BYTE_TO_UNICODE[b] for b in tb)


class Tokenizer:
    """Encoder/decoder for a trained byte-level BPE (the same algorithm HF's BPE model runs)."""

    def __init__(self, token_bytes, merges, special_tokens):
        self.token_bytes = list(token_bytes)
        self.merges = list(merges)
        self.ranks = {p: r for r, p in enumerate(self.merges)}
        self.special_tokens = list(special_tokens)
        self.special_ids = {s: len(self.token_bytes) + i for i, s in enumerate(self.special_tokens)}
        self._cache = {}

    @property
    def vocab_size(self):
        return len(self.token_bytes) + len(self.special_tokens)

    def _bpe(self, word):
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        w = list(word.encode("utf-8"))
        while len(w) > 1:
            best = None
            best_rank = None
            for p in zip(w, w[1:]):
                r = self.ranks.get(p)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = p, r
            if best is None:
                break
            new_id = 256 + best_rank
            merged = []
            i = 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == best[0] and w[i + 1] == best[1]:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(w[i])
                    i += 1
            w = merged
        self._cache[word] = w
        return w

    def encode(self, text, special=True):
        """Token ids of text. With special=True, occurrences of a special token's
        string become that token (as HF does for added tokens); the text between
        them is pre-tokenized and BPE-encoded on its own."""
        out = []
        pieces = [text]
        if special and self.special_tokens:
            pattern = "(" + "|".join(regex.escape(s) for s in self.special_tokens) + ")"
            pieces = regex.split(pattern, text)
        for piece in pieces:
            if piece in self.special_ids:
                out.append(self.special_ids[piece])
                continue
            for word in pretokenize(piece):
                out.extend(self._bpe(word))
        return out

    def decode(self, ids):
        parts = []
        for i in ids:
            if i < len(self.token_bytes):
                parts.append(self.token_bytes[i])
            else:
                parts.append(self.special_tokens[i - len(self.token_bytes)].encode("utf-8"))
        return b"".join(parts).decode("utf-8", errors="replace")

    def to_hf_json(self):
        """The tokenizer.json document (a dict) in the layout of GPT-2's file."""
        vocab = {token_string(tb): i for i, tb in enumerate(self.token_bytes)}
        for s, i in self.special_ids.items():
            vocab[s] = i
        if len(vocab) != self.vocab_size:
            raise RuntimeError("duplicate token strings in the vocabulary")
        merges = [token_string(self.token_bytes[a]) + " " + token_string(self.token_bytes[b])
                  for a, b in self.merges]
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True}
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for s, i in self.special_ids.items()
            ],
            "normalizer": None,
            "pre_tokenizer": byte_level,
            "post_processor": None,
            "decoder": dict(byte_level),
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": "",
                "end_of_word_suffix": "",
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": vocab,
                "merges": merges,
            },
        }

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_hf_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")

    @staticmethod
    def load(path):
        """Reads back a tokenizer.json written by save() (GPT-2-style byte-level BPE only)."""
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        vocab = doc["model"]["vocab"]
        specials = sorted(((t["id"], t["content"]) for t in doc["added_tokens"]))
        special_set = {s for _, s in specials}
        token_bytes = [None] * (len(vocab) - len(specials))
        for s, i in vocab.items():
            if s in special_set:
                continue
            token_bytes[i] = bytes(UNICODE_TO_BYTE[c] for c in s)
        index = {tb: i for i, tb in enumerate(token_bytes)}
        merges = []
        for m in doc["model"]["merges"]:
            left, right = m.split(" ") if isinstance(m, str) else m
            lb = bytes(UNICODE_TO_BYTE[c] for c in left)
            rb = bytes(UNICODE_TO_BYTE[c] for c in right)
            merges.append((index[lb], index[rb]))
        return Tokenizer(token_bytes, merges, [s for _, s in specials])
