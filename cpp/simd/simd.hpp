// The one portable SIMD layer. A kernel is written once as a template over a traits type `S`
// (S::V a vector of S::W floats, S::M a lane mask) and instantiated per instruction set by
// simd/instantiate.hpp:
//   Avx512  16 lanes (avx512f/bw/vl/dq + fma)        x86
//   Avx2     8 lanes (avx2 + fma)                     x86
//   Neon     4 lanes (arm_neon.h, baseline on aarch64)
//   Scalar   1 lane  (plain C++, any CPU; the compiler may auto-vectorise the loops around it)
// The x86 traits are defined inside `#pragma GCC target` regions (Highway's approach): only the
// functions textually inside a region get the wider instruction set, so inline std:: templates
// instantiated by baseline code never carry AVX-512 (a per-file -mavx512f would risk SIGILL on
// older CPUs when the linker keeps the wrong COMDAT copy).
//
// Operations (every traits type has all of them, same semantics):
//   load(p) / store(p, v)            unaligned, W lanes
//   load_n(p, n) / store_n(p, v, n)  first n lanes (0 <= n <= W); load_n zero-fills the rest,
//                                    store_n leaves memory past n untouched
//   set1(x), zero(), iota()          broadcast, zeros, {0, 1, ..., W-1}
//   add sub mul div, fma(a,b,c) = a*b+c, fnma(a,b,c) = c-a*b, neg, abs, sqrt
//   max(a,b) / min(a,b)              x86 semantics: when either is NaN the result is b
//   max_nan(a,b)                     NaN-propagating (torch.maximum / relu / max_pool semantics):
//                                    NaN when a or b is NaN, else max(a,b)
//   lt le gt eq (a,b) -> M, is_nan(a) -> M, select(m, a, b) = m ? a : b, any(m), mask_bits(m)
//   reduce_add(v)                    lanes summed in a fixed order (pairwise halves), so the
//                                    result does not depend on anything but the inputs
//   reduce_max(v)
//   either(m1, m2) -> M              mask or
//   zip(a, b, lo, hi)                interleave: lo = a0 b0 a1 b1 .., hi = the upper W of the 2W
//   unzip(a, b, even, odd)           inverse: even = lanes 0,2,4,.. of the 2W floats (a then b)
//   load_u8_n(p, n)                  first n bytes (0 <= n <= W) as floats, the rest 0
//   store_u8_n(p, v, n)              first n lanes (integers 0..255) as bytes
//   trunc(v)                         round toward zero
//   gather_xy(base, x, y, pitch)     lanes base[int(y) * pitch + int(x)] (x, y >= 0 integral floats;
//                                    the index must fit in 32 bits)
//   transpose(r[W])                  in-register W x W transpose: rows r[0..W-1] -> r[c] = column c
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(FASTMNIST_NO_SIMD)
#include <immintrin.h>
#define FM_X86 1
#else
#define FM_X86 0
#endif

#if defined(__aarch64__) && !defined(FASTMNIST_NO_SIMD)
#include <arm_neon.h>
#define FM_NEON 1
#else
#define FM_NEON 0
#endif

#define FM_INLINE inline __attribute__((always_inline))

// Target regions. FM_BEGIN_AVX2 ... FM_END_TARGET compiles the functions between them for
// AVX2+FMA, FM_BEGIN_AVX512 for the AVX-512 level (F, BW, VL, DQ; Skylake-X, Ice Lake, Zen 4).
#if defined(__clang__)
#define FM_BEGIN_AVX2 _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c,popcnt\"))), apply_to = function)")
#define FM_BEGIN_AVX512 \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,popcnt\"))), apply_to = function)")
#define FM_END_TARGET _Pragma("clang attribute pop")
#else
#define FM_BEGIN_AVX2 _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c,popcnt\")")
#define FM_BEGIN_AVX512 \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,popcnt\")")
#define FM_END_TARGET _Pragma("GCC pop_options")
#endif

namespace fm::simd {

// ---------------------------------------------------------------------------------------------
// Scalar: one lane, any CPU
// ---------------------------------------------------------------------------------------------
struct Scalar {
  using V = float;
  using M = bool;
  static constexpr int W = 1;
  static constexpr const char* name = "generic";
  static FM_INLINE V load(const float* p) { return *p; }
  static FM_INLINE void store(float* p, V v) { *p = v; }
  static FM_INLINE V load_n(const float* p, int n) { return n > 0 ? *p : 0.f; }
  static FM_INLINE void store_n(float* p, V v, int n) { if (n > 0) *p = v; }
  static FM_INLINE V set1(float x) { return x; }
  static FM_INLINE V zero() { return 0.f; }
  static FM_INLINE V iota() { return 0.f; }
  static FM_INLINE V add(V a, V b) { return a + b; }
  static FM_INLINE V sub(V a, V b) { return a - b; }
  static FM_INLINE V mul(V a, V b) { return a * b; }
  static FM_INLINE V div(V a, V b) { return a / b; }
  // a*b+c rounded twice unless the compiler contracts it (then once, as on the SIMD paths)
  static FM_INLINE V fma(V a, V b, V c) { return a * b + c; }
  static FM_INLINE V fnma(V a, V b, V c) { return c - a * b; }
  static FM_INLINE V neg(V a) { return -a; }
  static FM_INLINE V abs(V a) { return std::fabs(a); }
  static FM_INLINE V sqrt(V a) { return std::sqrt(a); }
  static FM_INLINE V max(V a, V b) { return a > b ? a : b; }
  static FM_INLINE V min(V a, V b) { return a < b ? a : b; }
  static FM_INLINE V max_nan(V a, V b) { return (a != a || b != b) ? a + b : (a > b ? a : b); }
  static FM_INLINE M lt(V a, V b) { return a < b; }
  static FM_INLINE M le(V a, V b) { return a <= b; }
  static FM_INLINE M gt(V a, V b) { return a > b; }
  static FM_INLINE M eq(V a, V b) { return a == b; }
  static FM_INLINE M is_nan(V a) { return a != a; }
  static FM_INLINE V select(M m, V a, V b) { return m ? a : b; }
  static FM_INLINE bool any(M m) { return m; }
  static FM_INLINE unsigned mask_bits(M m) { return m ? 1u : 0u; }
  static FM_INLINE float reduce_add(V v) { return v; }
  static FM_INLINE float reduce_max(V v) { return v; }
  static FM_INLINE M either(M a, M b) { return a || b; }
  static FM_INLINE void zip(V a, V b, V& lo, V& hi) { lo = a, hi = b; }
  static FM_INLINE void unzip(V a, V b, V& even, V& odd) { even = a, odd = b; }
  static FM_INLINE V load_u8_n(const uint8_t* p, int n) { return n > 0 ? float(*p) : 0.f; }
  static FM_INLINE void store_u8_n(uint8_t* p, V v, int n) { if (n > 0) *p = uint8_t(int32_t(v)); }
  static FM_INLINE V trunc(V v) { return std::trunc(v); }
  static FM_INLINE V gather_xy(const float* base, V x, V y, int32_t pitch) {
    return base[int64_t(int32_t(y)) * pitch + int32_t(x)];
  }
  static FM_INLINE void transpose(V (&)[1]) {}
};

}  // namespace fm::simd

#if FM_X86
FM_BEGIN_AVX2
namespace fm::simd {
// ---------------------------------------------------------------------------------------------
// AVX2 + FMA: 8 lanes
// ---------------------------------------------------------------------------------------------
struct Avx2 {
  using V = __m256;
  using M = __m256;  // all-ones / all-zeros lanes
  static constexpr int W = 8;
  static constexpr const char* name = "avx2";
  static FM_INLINE __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static FM_INLINE V load(const float* p) { return _mm256_loadu_ps(p); }
  static FM_INLINE void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static FM_INLINE V load_n(const float* p, int n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static FM_INLINE void store_n(float* p, V v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
  static FM_INLINE V set1(float x) { return _mm256_set1_ps(x); }
  static FM_INLINE V zero() { return _mm256_setzero_ps(); }
  static FM_INLINE V iota() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
  static FM_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  static FM_INLINE V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static FM_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static FM_INLINE V div(V a, V b) { return _mm256_div_ps(a, b); }
  static FM_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static FM_INLINE V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static FM_INLINE V neg(V a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.f)); }
  static FM_INLINE V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), a); }
  static FM_INLINE V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static FM_INLINE V max(V a, V b) { return _mm256_max_ps(a, b); }
  static FM_INLINE V min(V a, V b) { return _mm256_min_ps(a, b); }
  static FM_INLINE V max_nan(V a, V b) {
    // max_ps returns b when either is NaN; then add a NaN back where a is NaN
    V m = _mm256_max_ps(a, b);
    return _mm256_blendv_ps(m, a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  static FM_INLINE M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static FM_INLINE M le(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static FM_INLINE M gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static FM_INLINE M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static FM_INLINE M is_nan(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static FM_INLINE V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  static FM_INLINE bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static FM_INLINE unsigned mask_bits(M m) { return unsigned(_mm256_movemask_ps(m)); }
  static FM_INLINE float reduce_add(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static FM_INLINE float reduce_max(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static FM_INLINE M either(M a, M b) { return _mm256_or_ps(a, b); }
  static FM_INLINE void zip(V a, V b, V& lo, V& hi) {
    const __m256 l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);
    lo = _mm256_permute2f128_ps(l, h, 0x20);
    hi = _mm256_permute2f128_ps(l, h, 0x31);
  }
  static FM_INLINE void unzip(V a, V b, V& even, V& odd) {
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  static FM_INLINE V load_u8_n(const uint8_t* p, int n) {
    __m128i b;
    if (n >= 8) {
      b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    } else {  // assembled in a register (a byte-wise stack copy would stall store forwarding)
      uint64_t u = 0;
      for (int i = 0; i < n; ++i) u |= uint64_t(p[i]) << (8 * i);
      b = _mm_cvtsi64_si128(int64_t(u));
    }
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
  }
  static FM_INLINE void store_u8_n(uint8_t* p, V v, int n) {
    const __m256i i = _mm256_cvttps_epi32(v);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    const __m128i b = _mm_packus_epi16(w, w);
    if (n >= 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
    } else {
      uint64_t u = uint64_t(_mm_cvtsi128_si64(b));
      for (int j = 0; j < n; ++j) p[j] = uint8_t(u >> (8 * j));
    }
  }
  static FM_INLINE V trunc(V v) { return _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
  static FM_INLINE V gather_xy(const float* base, V x, V y, int32_t pitch) {
    const __m256i i = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_cvttps_epi32(y), _mm256_set1_epi32(pitch)),
                                       _mm256_cvttps_epi32(x));
    return _mm256_i32gather_ps(base, i, 4);
  }
  static FM_INLINE void transpose(V (&r)[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i) {
      u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
      r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
  }
};
}  // namespace fm::simd
FM_END_TARGET

FM_BEGIN_AVX512
namespace fm::simd {
// ---------------------------------------------------------------------------------------------
// AVX-512: 16 lanes
// ---------------------------------------------------------------------------------------------
struct Avx512 {
  using V = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static constexpr const char* name = "avx512";
  static FM_INLINE M tail(int n) { return n >= 16 ? M(0xFFFF) : n <= 0 ? M(0) : M((1u << n) - 1); }
  static FM_INLINE V load(const float* p) { return _mm512_loadu_ps(p); }
  static FM_INLINE void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static FM_INLINE V load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(tail(n), p); }
  static FM_INLINE void store_n(float* p, V v, int n) { _mm512_mask_storeu_ps(p, tail(n), v); }
  static FM_INLINE V set1(float x) { return _mm512_set1_ps(x); }
  static FM_INLINE V zero() { return _mm512_setzero_ps(); }
  static FM_INLINE V iota() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  static FM_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  static FM_INLINE V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static FM_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static FM_INLINE V div(V a, V b) { return _mm512_div_ps(a, b); }
  static FM_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static FM_INLINE V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static FM_INLINE V neg(V a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.f)); }
  static FM_INLINE V abs(V a) { return _mm512_abs_ps(a); }
  static FM_INLINE V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static FM_INLINE V max(V a, V b) { return _mm512_max_ps(a, b); }
  static FM_INLINE V min(V a, V b) { return _mm512_min_ps(a, b); }
  static FM_INLINE V max_nan(V a, V b) {
    return _mm512_mask_mov_ps(_mm512_max_ps(a, b), _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
  }
  static FM_INLINE M lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static FM_INLINE M le(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static FM_INLINE M gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static FM_INLINE M eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static FM_INLINE M is_nan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static FM_INLINE V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  static FM_INLINE bool any(M m) { return m != 0; }
  static FM_INLINE unsigned mask_bits(M m) { return unsigned(m); }
  static FM_INLINE float reduce_add(V v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static FM_INLINE float reduce_max(V v) { return _mm512_reduce_max_ps(v); }
  static FM_INLINE M either(M a, M b) { return M(a | b); }
  static FM_INLINE void zip(V a, V b, V& lo, V& hi) {
    lo = _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b);
    hi = _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b);
  }
  static FM_INLINE void unzip(V a, V b, V& even, V& odd) {
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    even = _mm512_permutex2var_ps(a, e, b);
    odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(e, _mm512_set1_epi32(1)), b);
  }
  static FM_INLINE V load_u8_n(const uint8_t* p, int n) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(tail(n), p)));
  }
  static FM_INLINE void store_u8_n(uint8_t* p, V v, int n) {
    _mm512_mask_cvtepi32_storeu_epi8(p, tail(n), _mm512_cvttps_epi32(v));
  }
  static FM_INLINE V trunc(V v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC); }
  static FM_INLINE V gather_xy(const float* base, V x, V y, int32_t pitch) {
    const __m512i i = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_cvttps_epi32(y), _mm512_set1_epi32(pitch)),
                                       _mm512_cvttps_epi32(x));
    return _mm512_i32gather_ps(i, base, 4);
  }
  static FM_INLINE void transpose(V (&r)[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // r[4i+j], 128-bit lane L: column 4L+j of rows 4i..4i+3
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512 s0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), s1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
      const __m512 s2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), s3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
      t[0 + j] = _mm512_shuffle_f32x4(s0, s2, 0x88);
      t[8 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
      t[4 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88);
      t[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
    }
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) r[i] = t[i];
  }
};
}  // namespace fm::simd
FM_END_TARGET
#endif  // FM_X86

#if FM_NEON
namespace fm::simd {
// ---------------------------------------------------------------------------------------------
// NEON (aarch64): 4 lanes
// ---------------------------------------------------------------------------------------------
struct Neon {
  using V = float32x4_t;
  using M = uint32x4_t;
  static constexpr int W = 4;
  static constexpr const char* name = "neon";
  static FM_INLINE V load(const float* p) { return vld1q_f32(p); }
  static FM_INLINE void store(float* p, V v) { vst1q_f32(p, v); }
  static FM_INLINE V load_n(const float* p, int n) {
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < n && i < 4; ++i) t[i] = p[i];
    return vld1q_f32(t);
  }
  static FM_INLINE void store_n(float* p, V v, int n) {
    float t[4];
    vst1q_f32(t, v);
    for (int i = 0; i < n && i < 4; ++i) p[i] = t[i];
  }
  static FM_INLINE V set1(float x) { return vdupq_n_f32(x); }
  static FM_INLINE V zero() { return vdupq_n_f32(0.f); }
  static FM_INLINE V iota() { const float t[4] = {0, 1, 2, 3}; return vld1q_f32(t); }
  static FM_INLINE V add(V a, V b) { return vaddq_f32(a, b); }
  static FM_INLINE V sub(V a, V b) { return vsubq_f32(a, b); }
  static FM_INLINE V mul(V a, V b) { return vmulq_f32(a, b); }
  static FM_INLINE V div(V a, V b) { return vdivq_f32(a, b); }
  static FM_INLINE V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  static FM_INLINE V fnma(V a, V b, V c) { return vfmsq_f32(c, a, b); }
  static FM_INLINE V neg(V a) { return vnegq_f32(a); }
  static FM_INLINE V abs(V a) { return vabsq_f32(a); }
  static FM_INLINE V sqrt(V a) { return vsqrtq_f32(a); }
  // the x86 semantics (b when either is NaN), so every ISA agrees bit for bit
  static FM_INLINE V max(V a, V b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  static FM_INLINE V min(V a, V b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
  static FM_INLINE V max_nan(V a, V b) { return vmaxq_f32(a, b); }  // FMAX propagates NaN
  static FM_INLINE M lt(V a, V b) { return vcltq_f32(a, b); }
  static FM_INLINE M le(V a, V b) { return vcleq_f32(a, b); }
  static FM_INLINE M gt(V a, V b) { return vcgtq_f32(a, b); }
  static FM_INLINE M eq(V a, V b) { return vceqq_f32(a, b); }
  static FM_INLINE M is_nan(V a) { return vmvnq_u32(vceqq_f32(a, a)); }
  static FM_INLINE V select(M m, V a, V b) { return vbslq_f32(m, a, b); }
  static FM_INLINE bool any(M m) { return vmaxvq_u32(m) != 0; }
  static FM_INLINE unsigned mask_bits(M m) {
    const uint32_t w[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(m, vld1q_u32(w)));
  }
  static FM_INLINE float reduce_add(V v) {
    float32x2_t s = vadd_f32(vget_low_f32(v), vget_high_f32(v));  // same order as the x86 halves
    return vget_lane_f32(s, 0) + vget_lane_f32(s, 1);
  }
  static FM_INLINE float reduce_max(V v) { return vmaxvq_f32(v); }
  static FM_INLINE M either(M a, M b) { return vorrq_u32(a, b); }
  static FM_INLINE void zip(V a, V b, V& lo, V& hi) { lo = vzip1q_f32(a, b), hi = vzip2q_f32(a, b); }
  static FM_INLINE void unzip(V a, V b, V& even, V& odd) { even = vuzp1q_f32(a, b), odd = vuzp2q_f32(a, b); }
  static FM_INLINE V load_u8_n(const uint8_t* p, int n) {
    float t[4] = {0.f, 0.f, 0.f, 0.f};
    for (int i = 0; i < n && i < 4; ++i) t[i] = float(p[i]);
    return vld1q_f32(t);
  }
  static FM_INLINE void store_u8_n(uint8_t* p, V v, int n) {
    int32_t t[4];
    vst1q_s32(t, vcvtq_s32_f32(v));
    for (int i = 0; i < n && i < 4; ++i) p[i] = uint8_t(t[i]);
  }
  static FM_INLINE V trunc(V v) { return vrndq_f32(v); }
  static FM_INLINE V gather_xy(const float* base, V x, V y, int32_t pitch) {
    int32_t xi[4], yi[4];
    vst1q_s32(xi, vcvtq_s32_f32(x));
    vst1q_s32(yi, vcvtq_s32_f32(y));
    const float t[4] = {base[int64_t(yi[0]) * pitch + xi[0]], base[int64_t(yi[1]) * pitch + xi[1]],
                        base[int64_t(yi[2]) * pitch + xi[2]], base[int64_t(yi[3]) * pitch + xi[3]]};
    return vld1q_f32(t);
  }
  static FM_INLINE void transpose(V (&r)[4]) {
    float32x4_t a = vtrn1q_f32(r[0], r[1]), b = vtrn2q_f32(r[0], r[1]);
    float32x4_t c = vtrn1q_f32(r[2], r[3]), d = vtrn2q_f32(r[2], r[3]);
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(c)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(b), vreinterpretq_f64_f32(d)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(c)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(b), vreinterpretq_f64_f32(d)));
  }
};
}  // namespace fm::simd
#endif  // FM_NEON
