// In-register W x W transpose for each traits type of simd/simd.hpp (used by the conv kernels to
// move between NCHW and channels-last): Transpose<S>::apply(r) turns the rows r[0..W-1] into
// r[c] = column c.
#pragma once

#include "simd/simd.hpp"

namespace fm::simd {

template <class S>
struct Transpose;

template <>
struct Transpose<Scalar> {
  static FM_INLINE void apply(float (&)[1]) {}
};

}  // namespace fm::simd

#if FM_X86
FM_BEGIN_AVX2
namespace fm::simd {
template <>
struct Transpose<Avx2> {
  static FM_INLINE void apply(__m256 (&r)[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i+j], 128-bit half L: column 4L+j of rows 4i..4i+3
#pragma GCC unroll 2
    for (int i = 0; i < 2; ++i) {
      u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
      u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
      u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
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
template <>
struct Transpose<Avx512> {
  static FM_INLINE void apply(__m512 (&r)[16]) {
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
      const __m512 s2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88),
                   s3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
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
template <>
struct Transpose<Neon> {
  static FM_INLINE void apply(float32x4_t (&r)[4]) {
    const float32x4x2_t a = vtrnq_f32(r[0], r[1]), b = vtrnq_f32(r[2], r[3]);
    r[0] = vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0]));
    r[1] = vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1]));
    r[2] = vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0]));
    r[3] = vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1]));
  }
};
}  // namespace fm::simd
#endif  // FM_NEON
