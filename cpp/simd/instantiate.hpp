// Instantiates one kernel file per instruction set. Usage, in a family's .cpp after its std
// includes and the declaration of its kernel-table struct:
//
//   #define FM_KERNELS_FILE "gemm.inl"
//   #include "simd/instantiate.hpp"
//
// The file is included once per ISA, each time inside its own namespace (fm::scalar, fm::avx2,
// fm::avx512 on x86, fm::neon on aarch64) where `S` names that ISA's traits type (simd.hpp) and
// `kIsa` its level, and the x86 copies inside their target regions. So every instantiation has its
// own symbols, and each ISA's kernel table (a const object the file defines, e.g. `kGemm`) is
// reached as fm::<isa>::kGemm; FM_PICK(kGemm) (dispatch.hpp) returns the one for the current
// level (and the macro FM_ISA_LEVEL the same number: 0 generic, 1 neon, 2 avx2, 3 avx512, for
// an `#if` around an ISA-specific specialisation). The kernel file must not include headers itself (it is pasted inside a namespace).
// No include guard: included once per family.
#ifndef FM_KERNELS_FILE
#error "define FM_KERNELS_FILE before including simd/instantiate.hpp"
#endif

#include "dispatch.hpp"
#include "simd/simd.hpp"

#define FM_ISA_LEVEL 0
namespace fm::scalar {
using S = ::fm::simd::Scalar;
[[maybe_unused]] constexpr Isa kIsa = Isa::generic;
#include FM_KERNELS_FILE
}  // namespace fm::scalar
#undef FM_ISA_LEVEL

#if FM_X86
FM_BEGIN_AVX2
#define FM_ISA_LEVEL 2
namespace fm::avx2 {
using S = ::fm::simd::Avx2;
[[maybe_unused]] constexpr Isa kIsa = Isa::avx2;
#include FM_KERNELS_FILE
}  // namespace fm::avx2
#undef FM_ISA_LEVEL
FM_END_TARGET

FM_BEGIN_AVX512
#define FM_ISA_LEVEL 3
namespace fm::avx512 {
using S = ::fm::simd::Avx512;
[[maybe_unused]] constexpr Isa kIsa = Isa::avx512;
#include FM_KERNELS_FILE
}  // namespace fm::avx512
#undef FM_ISA_LEVEL
FM_END_TARGET
#endif

#if FM_NEON
#define FM_ISA_LEVEL 1
namespace fm::neon {
using S = ::fm::simd::Neon;
[[maybe_unused]] constexpr Isa kIsa = Isa::neon;
#include FM_KERNELS_FILE
}  // namespace fm::neon
#undef FM_ISA_LEVEL
#endif

#undef FM_KERNELS_FILE
