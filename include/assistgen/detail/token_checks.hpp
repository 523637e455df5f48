// Private to the backends: the check every forward call runs on its input
// token ids, worded once.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>

#include "assistgen/error.hpp"
#include "assistgen/types.hpp"

namespace assistgen::detail {

/// Throws InvalidArgument naming the first id of `tokens` outside
/// [0, vocab), its position (and `request`, in a batched call).
inline void check_token_ids(std::span<const Token> tokens, std::size_t vocab,
                            std::optional<std::size_t> request = std::nullopt) {
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || static_cast<std::size_t>(tokens[i]) >= vocab)
      throw InvalidArgument("token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                            (request ? " of request " + std::to_string(*request) : std::string()) +
                            " is out of range for vocabulary size " + std::to_string(vocab));
}

}  // namespace assistgen::detail
