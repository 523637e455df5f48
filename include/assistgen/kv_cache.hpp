// Key/value caches, in one include: the process-wide KV memory bound
// (kv_budget.hpp), the exclusive-use check (exclusive_use.hpp), the CPU
// backend's preallocated store (cpu/kv_storage.hpp) and the manager that hands
// out one cache per (model, sequence) (kv_cache_manager.hpp). Include the part
// you use; this header stays for code written before the split.
#pragma once

#include "assistgen/cpu/kv_storage.hpp"
#include "assistgen/exclusive_use.hpp"
#include "assistgen/kv_budget.hpp"
#include "assistgen/kv_cache_manager.hpp"
