// Shared helpers for the kernels: plain C++, no Python.
#pragma once
#include <cstddef>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

// FM_X86: the SIMD kernels (GCC target attributes + intrinsics) are compiled in -- an x86 target and
// not disabled with -DFASTMNIST_NO_SIMD. Whether they run is decided at run time by gemm_isa().
#if (defined(__x86_64__) || defined(__i386__)) && !defined(FASTMNIST_NO_SIMD)
#include <immintrin.h>
#define FM_X86 1
#else
#define FM_X86 0
#endif

namespace fm {

// Instruction-set dispatch, one switch for every kernel family. The level is chosen once from the
// CPU (avx512f > avx2+fma > generic); FASTMNIST_ISA=generic|avx2|avx512 in the environment or
// gemm_set_isa() (tests) can lower it. Defined in gemm.cpp.
enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };
Isa gemm_isa();
// True when kernels of level `isa` may run (always false in a FASTMNIST_NO_SIMD / non-x86 build).
inline bool simd_at_least(Isa isa) { return FM_X86 && int(gemm_isa()) >= int(isa); }

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Number of threads in the current parallel region (1 outside one).
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Half-open range [begin, end) of `n` items owned by thread `t` of `nt` (contiguous static split).
inline void split_range(int64_t n, int t, int nt, int64_t& begin, int64_t& end) {
  int64_t q = n / nt, r = n % nt;
  begin = t * q + (t < r ? t : r);
  end = begin + q + (t < r ? 1 : 0);
}

}  // namespace fm
