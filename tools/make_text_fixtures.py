"""Writes the small tokenizers the text-API tests pair with the random test
checkpoints (tests/data/models/, vocabulary 256) into tests/data/text/.

    /usr/bin/python3 tools/make_text_fixtures.py     # any python3 works: json only

Both are byte-level BPE tokenizers over the 95 printable ASCII characters plus
tab and newline (so they are lossless on ASCII text), small enough to fit the
checkpoints' 256 logit rows (the rows past the tokenizer are masked by the
text API):

  char/    ids 0..2 = <pad> <s> </s>, ids 3..99 the characters, no merges;
           BOS added (tokenizer_config.json add_bos_token), EOS </s> = 2,
           as the checkpoints' config.json (bos 1, eos 2). 100 ids.
  merged/  id 0 = <|endoftext|> (bos and eos), the characters in another order,
           then 40 merges of frequent English pairs; no BOS added. 138 ids.
           A different vocabulary: pairing it with `char` takes the
           different-tokenizer (universal) path.
The output is deterministic.
"""

import json
import os

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "text")


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


B2U = bytes_to_unicode()
CHARS = [B2U[b] for b in [9, 10] + list(range(32, 127))]


def added(id_, content):
    return {"id": id_, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(vocab, merges, specials):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(vocab[s], s) for s in specials],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def write(name, files):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for fname, obj in files.items():
        with open(os.path.join(d, fname), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")


def make_char():
    specials = ["<pad>", "<s>", "</s>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for c in CHARS:
        vocab[c] = len(vocab)
    write("char", {
        "tokenizer.json": tokenizer_json(vocab, [], specials),
        "tokenizer_config.json": {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
                                  "eos_token": "</s>", "pad_token": "<pad>"},
    })


MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n"), ("Ġ", "a"), ("o", "n"),
          ("r", "e"), ("Ġ", "s"), ("e", "d"), ("n", "d"), ("Ġa", "nd"), ("Ġ", "w"), ("Ġ", "o"), ("o", "u"),
          ("i", "s"), ("Ġ", "c"), ("e", "s"), ("i", "t"), ("Ġ", "h"), ("Ġ", "b"), ("Ġ", "f"), ("o", "r"),
          ("Ġ", "G"), ("Ġ", "m"), ("a", "t"), ("Ġo", "f"), ("Ġt", "o"), ("Ġ", "d"), ("a", "r"), ("Ġ", "p"),
          ("l", "l"), ("Ġ", "in"), ("Ġ", "L"), ("Ġ", "l"), ("e", "n"), ("Ġh", "is"), ("Ġ", "y"), ("Ġ", "n")]


def make_merged():
    specials = ["<|endoftext|>"]
    vocab = {specials[0]: 0}
    for c in reversed(CHARS):
        vocab[c] = len(vocab)
    merges = []
    for a, b in MERGES:
        assert a in vocab and b in vocab, (a, b)
        vocab[a + b] = len(vocab)
        merges.append(a + " " + b)
    write("merged", {
        "tokenizer.json": tokenizer_json(vocab, merges, specials),
        "tokenizer_config.json": {"add_bos_token": False, "bos_token": "<|endoftext|>",
                                  "eos_token": "<|endoftext|>"},
        "generation_config.json": {"bos_token_id": 0, "eos_token_id": 0},
    })


if __name__ == "__main__":
    make_char()
    make_merged()
    print("wrote", OUT)
