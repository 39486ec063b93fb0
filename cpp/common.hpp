// Shared helpers for the kernels: plain C++, no Python.
#pragma once
#include <cstddef>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

// FM_X86 / FM_NEON, the SIMD traits (simd/simd.hpp) and the one dispatch (Isa, isa(), FM_PICK,
// note_kernel) every kernel family uses.
#include "dispatch.hpp"
#include "simd/simd.hpp"

namespace fm {

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
