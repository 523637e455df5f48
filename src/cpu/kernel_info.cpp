// cpu::kernel_isa(): the public name of the kernels' active instruction set.
#include "assistgen/cpu/transformer.hpp"
#include "kernels.hpp"

namespace assistgen::cpu {

const char* kernel_isa() { return detail::isa_name(detail::active_isa()); }

}  // namespace assistgen::cpu
