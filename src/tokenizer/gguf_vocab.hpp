// Private to src/tokenizer: the tokenizer stored in a GGUF file's metadata
// (tokenizer.ggml.*), restated as the tokenizer.json and
// tokenizer_config.json texts that Tokenizer::from_json reads, so the GGUF
// vocabulary runs through the same, tested components.
//
//   tokenizer.ggml.model "gpt2": byte-level BPE; `tokens` and `merges`;
//     `pre` names the pre-tokenizer: "gpt-2" / "default" (GPT-2's regex),
//     "llama-bpe" / "llama3" / "llama-v3" (Llama 3's regex; whole-word vocabulary
//     hits skip the merges, as Llama 3's tokenizer.json says), "qwen2";
//   tokenizer.ggml.model "llama": SentencePiece-style BPE with byte fallback
//     (<0xXX> tokens), "▁" for spaces, and when add_space_prefix (default
//     true) a "▁" before the text and after each special token, as
//     llama.cpp's SPM tokenizer does (transformers' Llama normalizer);
//     merges from `merges` when present, else from `scores` (SentencePiece's
//     rule: merge the adjacent pair whose joined piece scores highest;
//     every split of a piece into two vocabulary pieces is a merge of that
//     piece's rank, ties by the halves' ids, as transformers' converter).
//   token_type: 2 unknown, 3 control (special added tokens), 4 user-defined
//     (added tokens), 5 unused, 6 byte, else normal; bos/eos/unknown ids and
//     add_bos_token / add_eos_token from their keys.
// Other models and pre-tokenizer names are an UnsupportedError naming the
// key and the value; inconsistent arrays a FormatError naming the key.
#pragma once

#include <string>

#include "assistgen/io/gguf.hpp"

namespace assistgen::tok {

struct GgufTokenizerJson {
  std::string tokenizer_json, tokenizer_config_json;
};

/// Whether `file` holds a tokenizer (the key tokenizer.ggml.model).
bool gguf_has_tokenizer(const io::GgufFile& file);

/// The tokenizer of `file` as JSON texts (see above).
GgufTokenizerJson gguf_tokenizer_json(const io::GgufFile& file);

}  // namespace assistgen::tok
