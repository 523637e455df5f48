// EXPECT-NO-WARNINGS
// Every public options / result aggregate can be brace-initialised with only
// some designated members under -Wall -Wextra -Werror: each member has a
// default member initializer, so -Wmissing-field-initializers stays quiet.
#include <assistgen/cpu/transformer.hpp>
#include <assistgen/generate.hpp>
#include <assistgen/generation_config.hpp>
#include <assistgen/universal_decoder.hpp>

assistgen::GenerateOptions generate_options() {
  return {.max_new_tokens = 64, .num_assistant_tokens = 4};
}
assistgen::GenerateOptions generate_options_empty() { return {}; }
assistgen::LoadModelOptions load_model_options() { return {.threads = 2}; }
assistgen::cpu::LoadOptions cpu_load_options() { return {.threads = 1}; }
assistgen::GenerationConfig generation_config() { return {.max_new_tokens = 8, .do_sample = true}; }
assistgen::UniversalOptions universal_options() { return {.target_lookbehind = 4}; }
assistgen::SpecialTokens special_tokens() { return {.eos_token_ids = {2}}; }
assistgen::PositionLimits position_limits() { return {.hard = 64}; }
assistgen::GenerationStats generation_stats() { return {.new_tokens = 1}; }
assistgen::GenerationResult generation_result() { return {.tokens = {1, 2}}; }
assistgen::TextResult text_result() { return {.text = "x"}; }
assistgen::BatchOptions batch_options() { return {.max_batch = 4}; }
assistgen::BatchStats batch_stats() { return {.rounds = 1}; }
assistgen::BatchRequest batch_request() { return {.prompt = "x"}; }
assistgen::BatchGenerateOptions batch_generate_options() { return {.max_batch = 2}; }
assistgen::BatchTextResult batch_text_result() { return {.seconds = 1.0}; }
assistgen::BatchIdsRequest batch_ids_request() { return {.prompt = {1}}; }
assistgen::BatchIdsResult batch_ids_result() { return {.seconds = 1.0}; }
assistgen::BatchEngine<assistgen::AnyModel>::Finished batch_finished() { return {.id = 1}; }
