// Deprecated header: the model configuration (ModelConfig, load_config) is in
// model_config.hpp. This header goes away in the next release.
#pragma once

#include "assistgen/model_config.hpp"
