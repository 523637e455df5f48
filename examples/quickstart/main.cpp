// The README's example: assisted generation with the demo pair of models/,
// streaming the text, then the acceptance rate. Every failure the library
// reports (a missing directory, a corrupt checkpoint, a draft that cannot
// assist the target) is an assistgen::Error whose message names the file or
// option at fault.
//   quickstart [TARGET_DIR DRAFT_DIR]   (default: models/kjv-target models/kjv-draft)
#include <assistgen/assistgen.hpp>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  const std::string target_dir = argc > 1 ? argv[1] : "models/kjv-target";
  const std::string draft_dir = argc > 2 ? argv[2] : "models/kjv-draft";
  try {
    // HF model directories: config.json, *.safetensors, tokenizer.json.
    assistgen::Model target = assistgen::load_model(target_dir);
    assistgen::Model draft = assistgen::load_model(draft_dir);
    auto out =
        target.generate("And God said", draft, {.max_new_tokens = 64, .num_assistant_tokens = 4},
                        [](std::string_view piece) {
                          std::cout << piece << std::flush;
                          return true;  // false stops generation
                        });
    std::cout << "\nacceptance " << out.stats.acceptance_rate() << ", "
              << out.stats.tokens_per_target_call() << " tokens per target pass\n";
  } catch (const assistgen::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
