// The umbrella header: everything a program needs to generate text with
// assisted generation, from load_model() and Model::generate() down to the
// decoders, the backend concept and the CPU backend's public interface.
// Link assistgen::cpu (load_model and cpu::Transformer live there).
#pragma once

#include "assistgen/acceptance.hpp"
#include "assistgen/any_model.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/chat.hpp"
#include "assistgen/chat_template.hpp"
#include "assistgen/config.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/error.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/greedy.hpp"
#include "assistgen/jinja.hpp"
#include "assistgen/kv_cache.hpp"
#include "assistgen/log.hpp"
#include "assistgen/lookahead.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tokenizer.hpp"
#include "assistgen/types.hpp"
#include "assistgen/universal_decoder.hpp"
