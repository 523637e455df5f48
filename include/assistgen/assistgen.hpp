// The umbrella header: everything a program needs to generate text with
// assisted generation, from load_model() and Model::generate() down to the
// decoders, the backend concept and the CPU backend's public interface.
// Link assistgen::cpu (load_model and cpu::Transformer live there).
#pragma once

#include "assistgen/acceptance.hpp"
#include "assistgen/any_model.hpp"
#include "assistgen/assisted_decoder.hpp"
#include "assistgen/batch_engine.hpp"
#include "assistgen/autoregressive.hpp"
#include "assistgen/backend.hpp"
#include "assistgen/candidate_source.hpp"
#include "assistgen/candidates/different_tokenizer.hpp"
#include "assistgen/candidates/draft_model.hpp"
#include "assistgen/candidates/prompt_lookup.hpp"
#include "assistgen/chat.hpp"
#include "assistgen/chat_template.hpp"
#include "assistgen/cpu/transformer.hpp"
#include "assistgen/draft_length.hpp"
#include "assistgen/error.hpp"
#include "assistgen/exclusive_use.hpp"
#include "assistgen/generate.hpp"
#include "assistgen/generation_config.hpp"
#include "assistgen/jinja.hpp"
#include "assistgen/kv_budget.hpp"
#include "assistgen/kv_cache.hpp"
#include "assistgen/kv_cache_manager.hpp"
#include "assistgen/log.hpp"
#include "assistgen/model_config.hpp"
#include "assistgen/speculative_decoder.hpp"
#include "assistgen/tokenizer.hpp"
#include "assistgen/types.hpp"
#include "assistgen/universal_decoder.hpp"
