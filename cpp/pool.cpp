// Max pooling, NCHW. The general kernel scans each window like PyTorch's CPU kernel; the
// 2x2 / stride 2 / no padding case (every pool of the MNIST models) has its own path. The plane
// and row kernels are written once (pool.inl) and instantiated per ISA; the flat-stream backward
// is an AVX-512 VBMI specialisation beside them (faster where the CPU has VBMI; see below).
// Parallel over the N*C planes, or, where 2x2 windows tile the input (the uint8-argmax forward
// and backward of training), over one contiguous range of output rows per thread; small inputs
// run serially (an OpenMP region costs more than the work at MNIST sizes).
#include "pool.hpp"

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "activation.hpp"  // relu_backward
#include "common.hpp"       // dispatch, simd layer

namespace fm {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // input elements below which a call runs on one thread

// PyTorch's update rule: a strictly greater value or any NaN takes over.
inline bool takes_over(float v, float m) { return (v > m) | (v != v); }

// ---------------------------------------------------------------------------------------------
// forward
// ---------------------------------------------------------------------------------------------

// Compact argmax: offset dh*KW + dw of flat position pos inside the (unclipped) window of (oh, ow).
inline uint8_t window_code(const Pool2dShape& s, int64_t oh, int64_t ow, int64_t pos) {
  const int64_t ih = pos / s.W, iw = pos - ih * s.W;
  return uint8_t((ih - (oh * s.SH - s.PH)) * s.KW + (iw - (ow * s.SW - s.PW)));
}

// One output element, any geometry: scan the clipped window in row-major order.
// Writes y[oh, ow] and returns the flat position of the maximum.
inline int64_t pool_one(const Pool2dShape& s, const float* x, int64_t oh, int64_t ow, float* y) {
  const int64_t H = s.H, W = s.W;
  int64_t h0 = oh * s.SH - s.PH, h1 = std::min<int64_t>(h0 + s.KH, H);
  int64_t w0 = ow * s.SW - s.PW, w1 = std::min<int64_t>(w0 + s.KW, W);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  float m = -std::numeric_limits<float>::infinity();
  int64_t mi = h0 * W + w0;
  for (int64_t ih = h0; ih < h1; ++ih)
    for (int64_t iw = w0; iw < w1; ++iw) {
      float v = x[ih * W + iw];
      if (takes_over(v, m)) {
        m = v;
        mi = ih * W + iw;
      }
    }
  y[oh * s.OW + ow] = m;
  return mi;
}

// One plane, any geometry: x (H,W) -> y (OH,OW), idx or code (OH,OW) (may be null). Plain loops.
void pool_plane_reference(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code) {
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t mi = pool_one(s, x, oh, ow, y);
      if (idx) idx[oh * s.OW + ow] = mi;
      if (code) code[oh * s.OW + ow] = window_code(s, oh, ow, mi);
    }
}

}  // namespace

struct PoolKernels {
  void (*fwd_any)(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code);
  void (*fwd_2x2)(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code);
  bool (*bwd_2x2)(const Pool2dShape& s, const float* gy, const int64_t* idx, float* gx);
  bool (*bwd_2x2_code)(const Pool2dShape& s, const float* gy, const uint8_t* code, const float* relu_y, float* gx);
  float (*bwd_flat_2x2_code)(int64_t OW, int64_t r0, int64_t r1, const float* gy, const uint8_t* code,
                             const float* relu_y, float* gx);
  void (*fwd_flat_2x2)(int64_t OW, int64_t r0, int64_t r1, const float* x, float* y, uint8_t* code);
  const char* name;
};

}  // namespace fm

#define FM_KERNELS_FILE "pool.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {

bool g_simd = true;
std::atomic<int64_t> g_stream_fallbacks{0};  // stream backward calls that found an argmax outside its window

// The plane kernels of the current level (pool_set_simd(false), for tests, selects the generic ones).
const PoolKernels& pool_kernels() { return FM_PICK_FOR(g_simd ? isa() : Isa::generic, kPool); }

// The VBMI stream specialisation runs at the AVX-512 level on CPUs with AVX-512 VBMI (byte
// permutes: Ice Lake, Zen 4 and later).
bool have_avx512vbmi() { return g_simd && isa() == Isa::avx512 && cpu_features().avx512vbmi; }

// ---------------------------------------------------------------------------------------------
// backward
// ---------------------------------------------------------------------------------------------

// One plane, any geometry: gx (H*W) = scatter-add of gy (n) at idx. False on an index out of range.
bool unpool_plane_generic(int64_t HW, int64_t n, const float* gy, const int64_t* idx, float* gx) {
  std::memset(gx, 0, sizeof(float) * HW);
  for (int64_t o = 0; o < n; ++o) {
    int64_t i = idx[o];
    if (i < 0 || i >= HW) return false;
    gx[i] += gy[o];
  }
  return true;
}

// ---- flat stream: 2x2 / stride 2 / no padding with H == 2*OH and W == 2*OW ----
//
// Then every input row pair belongs to one output row and the planes follow each other without
// gaps, so grad_x of the whole tensor is one stream of floats in which each run of OW gradients
// (one output row) is written twice, spread to column pairs, once for the top and once for the
// bottom input row. The stream repeats with a period of L = lcm(4*OW, 16) floats = Vp vectors
// of 16 that take Pg = L/4 = 4*Vp consecutive gradients (OW = 14 and OW = 7, MNIST: L = 112, 7
// vectors from 28 gradients). Per period the kernel
//   - loads the Pg gradients into two registers and the Pg argmax as one byte each: the compact
//     code 2*dh + dw as stored, or, for int64 indices, index minus the window's top-left plane
//     position (16-bit arithmetic, wrapping to the next plane inside the period) mapped from
//     {0, 1, W, W+1} to 0..3 (anything else is reported; the caller then falls back);
//   - builds the nonzero masks of up to 4 output vectors at once: one byte permute (vpermb) sends
//     each lane its gradient's code, one byte compare checks it against the lane's own offset;
//   - writes each of the Vp vectors with one zero-masked two-register permute and one store.
// Every element of grad_x is written exactly once with full vector stores (aligned when grad_x
// is), no zero pass, no scatter, no branch on the data. The N*C*OH*OW gradients are split into
// equal contiguous runs of whole periods, one per thread, inside one parallel region.
// Measured on a Zen 4 (2 threads, MNIST shapes): within 1.2-1.5x of glibc memset of grad_x alone;
// the int64 path additionally reads 8 bytes per gradient.
struct UnpoolStream {
  int Vp = 0, Pg = 0;
  alignas(64) int32_t src[8][16];   // gradient (0..Pg-1 inside the period) that feeds each lane
  alignas(64) uint8_t lane_src[2][64];   // the same as bytes, lanes 0..63 and 64..127
  alignas(64) uint8_t lane_code[2][64];  // window offset 2*dh + dw that each lane stands for
  alignas(64) int16_t corner[32];  // int64 path: each gradient's window top-left plane position,
                                   // minus 2*oh0*W with oh0 the output row of the period's start
  alignas(64) int16_t drow[32];    // output row of each gradient inside the period
};

// False when the period needs more than 32 gradients (two registers); the row kernels run then.
bool make_unpool_stream(int64_t OW, UnpoolStream& st) {
  if (OW <= 0 || OW > 32) return false;
  int64_t L = 4 * OW;
  while (L % 16) L += 4 * OW;
  if (L / 4 > 32) return false;
  st.Vp = int(L / 16), st.Pg = int(L / 4);
  const int64_t W = 2 * OW;
  std::memset(st.lane_src, 0, sizeof st.lane_src);
  std::memset(st.lane_code, 0xFE, sizeof st.lane_code);
  for (int64_t o = 0; o < L; ++o) {
    const int64_t unit = o / (2 * W), in = o % (2 * W), dh = in / W, iw = in % W;
    st.src[o / 16][o % 16] = int32_t(unit * OW + iw / 2);
    st.lane_src[o / 64][o % 64] = uint8_t(unit * OW + iw / 2);
    st.lane_code[o / 64][o % 64] = uint8_t(2 * dh + (iw & 1));
  }
  for (int e = 0; e < 32; ++e) {
    st.corner[e] = int16_t(2 * (e / OW) * W + 2 * (e % OW));
    st.drow[e] = int16_t(e / OW);
  }
  return true;
}

#if FM_X86
// Gradients g0..g1 (flat indices into gy; g0 a multiple of Pg, g1 a multiple of OW) of the flat
// stream, Vp vectors per period. kCode: `arg` is the uint8 compact argmax, else the int64 torch
// indices (planes of at most 2^16 elements: positions are compared in 16 bits). False if an
// argmax lies outside its window.
template <bool kCode, int Vp>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi"))) bool unpool_stream_avx512(
    const UnpoolStream& st, int64_t OH, int64_t OW, const float* gy, const void* arg, const float* relu_y, float* gx,
    int64_t g0, int64_t g1) {
  constexpr int Pg = 4 * Vp;
  __m512i src[Vp];
  for (int j = 0; j < Vp; ++j) src[j] = _mm512_load_si512(st.src[j]);
  const __m512i lsrc0 = _mm512_load_si512(st.lane_src[0]), lsrc1 = _mm512_load_si512(st.lane_src[1]);
  const __m512i lcode0 = _mm512_load_si512(st.lane_code[0]), lcode1 = _mm512_load_si512(st.lane_code[1]);
  // int64 path: 16-bit arithmetic (exact: planes hold at most 2^16 elements, higher bits checked)
  const __m512i corner = _mm512_load_si512(st.corner), drow = _mm512_load_si512(st.drow);
  const __m512i even32 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i even16 = _mm512_setr_epi32(0x00020000, 0x00060004, 0x000A0008, 0x000E000C, 0x00120010, 0x00160014,
                                           0x001A0018, 0x001E001C, 0x00220020, 0x00260024, 0x002A0028, 0x002E002C,
                                           0x00320030, 0x00360034, 0x003A0038, 0x003E003C);
  const int16_t W = int16_t(2 * OW), plane = int16_t(4 * OH * OW), row2 = int16_t(4 * OW);
  const __m512i offW = _mm512_set1_epi16(W);
  const __m512i vplane = _mm512_set1_epi16(plane);
  const __m512i offWm2 = _mm512_set1_epi16(int16_t(W - 2)), two = _mm512_set1_epi16(2), four = _mm512_set1_epi16(4);
  const uint8_t* cd = static_cast<const uint8_t*>(arg);
  const int64_t* ix = static_cast<const int64_t*>(arg);
  const int32_t rows = int32_t(Pg / OW);  // output rows per period
  int32_t oh0 = int32_t((g0 / OW) % OH);  // output row (inside its plane) of the period's start
  __m512i hi = _mm512_setzero_si512();    // OR of the int64 indices (bits 16..63 must stay 0)
  __m256i acc = _mm256_setzero_si256();   // OR of the compact codes (must stay <= 3)
  __mmask32 missing = 0;
  for (int64_t g = g0; g < g1; g += Pg) {
    const int n = int(std::min<int64_t>(Pg, g1 - g));
    const __mmask32 valid = n >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << n) - 1);
    const __mmask16 mlo = (__mmask16)valid, mhi = (__mmask16)(valid >> 16);
    __m512 v0 = _mm512_maskz_loadu_ps(mlo, gy + g);
    __m512 v1 = Pg > 16 ? _mm512_maskz_loadu_ps(mhi, gy + g + 16) : _mm512_setzero_ps();
    if (relu_y) {  // fused ReLU backward: gradient 0 where the pooled value is <= 0 (NaN passes)
      const __m512 z = _mm512_setzero_ps();
      v0 = _mm512_maskz_mov_ps(_mm512_mask_cmp_ps_mask(mlo, _mm512_maskz_loadu_ps(mlo, relu_y + g), z, _CMP_NLE_UQ), v0);
      if (Pg > 16)
        v1 = _mm512_maskz_mov_ps(
            _mm512_mask_cmp_ps_mask(mhi, _mm512_maskz_loadu_ps(mhi, relu_y + g + 16), z, _CMP_NLE_UQ), v1);
    }
    __m256i c;  // window offset 2*dh + dw of each gradient's maximum, one byte each
    if (kCode) {
      c = _mm256_maskz_loadu_epi8(valid, cd + g);
      acc = _mm256_or_si256(acc, c);
    } else {
      const int64_t* q = ix + g;
      const __m512i q0 = _mm512_maskz_loadu_epi64((__mmask8)mlo, q);
      const __m512i q1 = _mm512_maskz_loadu_epi64((__mmask8)(mlo >> 8), q + 8);
      const __m512i q2 = Pg > 16 ? _mm512_maskz_loadu_epi64((__mmask8)mhi, q + 16) : _mm512_setzero_si512();
      const __m512i q3 = Pg > 24 ? _mm512_maskz_loadu_epi64((__mmask8)(mhi >> 8), q + 24) : _mm512_setzero_si512();
      hi = _mm512_or_si512(hi, _mm512_or_si512(_mm512_or_si512(q0, q1), _mm512_or_si512(q2, q3)));
      const __m512i w = _mm512_permutex2var_epi16(_mm512_permutex2var_epi32(q0, even32, q1), even16,
                                                  _mm512_permutex2var_epi32(q2, even32, q3));
      // window corners; gradients past the end of their plane belong to the next one (row 0)
      __m512i cor = _mm512_add_epi16(_mm512_set1_epi16(int16_t(oh0 * row2)), corner);
      cor = _mm512_mask_sub_epi16(cor, _mm512_cmpge_epi16_mask(drow, _mm512_set1_epi16(int16_t(OH - oh0))), cor, vplane);
      const __m512i l = _mm512_sub_epi16(w, cor);
      // offset l in {0, 1, W, W+1} -> code l or l - W + 2; anything else is reported missing
      // (this range then stops at once and the caller redoes the whole tensor)
      const __mmask32 bottom = _mm512_cmpge_epu16_mask(l, offW);
      const __m512i t = _mm512_mask_sub_epi16(l, bottom, l, offWm2);
      missing |= valid & ~_mm512_cmplt_epu16_mask(t, _mm512_mask_blend_epi16(bottom, two, four));
      if (missing) return false;  // not a 2x2 argmax (say from a 3x3 / stride 2 / padding 1 pool)
      c = _mm512_cvtepi16_epi8(t);
      oh0 += rows;
      if (oh0 >= OH) oh0 -= int32_t(OH);
    }
    // lane masks: each lane's gradient's argmax byte == the window offset the lane stands for
    const __m512i cz = _mm512_castsi256_si512(c);
    const __mmask64 K0 = _mm512_cmpeq_epi8_mask(_mm512_permutexvar_epi8(lsrc0, cz), lcode0);
    const __mmask64 K1 = Vp > 4 ? _mm512_cmpeq_epi8_mask(_mm512_permutexvar_epi8(lsrc1, cz), lcode1) : 0;
    float* out = gx + 4 * g;
    if (n == Pg) {
      for (int j = 0; j < Vp; ++j) {
        const __mmask16 m = (__mmask16)((j < 4 ? K0 : K1) >> (16 * (j & 3)));
        _mm512_storeu_ps(out + 16 * j, _mm512_maskz_permutex2var_ps(m, v0, src[j], v1));
      }
    } else {
      const int nf = 4 * n;  // floats of grad_x left (whole output rows)
      for (int j = 0; j < Vp && 16 * j < nf; ++j) {
        const __mmask16 m = (__mmask16)((j < 4 ? K0 : K1) >> (16 * (j & 3)));
        const __mmask16 keep = nf - 16 * j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nf - 16 * j)) - 1);
        _mm512_mask_storeu_ps(out + 16 * j, keep, _mm512_maskz_permutex2var_ps(m, v0, src[j], v1));
      }
    }
  }
  if (kCode) return _mm256_cmpgt_epu8_mask(acc, _mm256_set1_epi8(3)) == 0;
  return missing == 0 && _mm512_test_epi64_mask(hi, _mm512_set1_epi64(~int64_t(0xFFFF))) == 0;
}

template <bool kCode>
bool unpool_stream_range(const UnpoolStream& st, int64_t OH, int64_t OW, const float* gy, const void* arg,
                         const float* relu_y, float* gx, int64_t g0, int64_t g1) {
  switch (st.Vp) {
    case 1: return unpool_stream_avx512<kCode, 1>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    case 2: return unpool_stream_avx512<kCode, 2>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    case 3: return unpool_stream_avx512<kCode, 3>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    case 4: return unpool_stream_avx512<kCode, 4>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    case 5: return unpool_stream_avx512<kCode, 5>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    case 6: return unpool_stream_avx512<kCode, 6>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    case 7: return unpool_stream_avx512<kCode, 7>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
    default: return unpool_stream_avx512<kCode, 8>(st, OH, OW, gy, arg, relu_y, gx, g0, g1);
  }
}
#endif

// The whole flat stream, split over the threads. False if an argmax lies outside its window
// (grad_x is then unspecified; the caller redoes it with the plane kernels).
template <bool kCode>
bool unpool_stream(const Pool2dShape& s, const UnpoolStream& st, const float* gy, const void* arg, const float* relu_y,
                   float* gx) {
#if FM_X86
  const int64_t M = s.N * s.C * s.OH * s.OW, periods = (M + st.Pg - 1) / st.Pg;
  bool ok = true;
#pragma omp parallel reduction(&& : ok) if (4 * M >= kParallelMin)
  {
    int64_t k0, k1;
    split_range(periods, thread_id(), num_threads(), k0, k1);
    if (k0 < k1) ok = unpool_stream_range<kCode>(st, s.OH, s.OW, gy, arg, relu_y, gx, k0 * st.Pg, std::min(M, k1 * st.Pg));
  }
  return ok;
#else
  (void)s, (void)st, (void)gy, (void)arg, (void)relu_y, (void)gx;
  return false;
#endif
}

// The flat stream applies: 2x2 windows tiling the input exactly, AVX-512, a short period.
bool use_unpool_stream(const Pool2dShape& s, UnpoolStream& st) {
  return have_avx512vbmi() && s.OH >= 1 && s.OW >= 1 && s.H == 2 * s.OH && s.W == 2 * s.OW &&
         s.H * s.W <= (int64_t(1) << 16) && make_unpool_stream(s.OW, st) && st.Pg / s.OW <= s.OH;
}

// ---- compact argmax (window offsets dh*KW + dw as bytes) ----

// One plane, any geometry: gx (H,W) = scatter-add of gy (OH,OW) at the decoded positions.
// False on a code outside the window or pointing into the padding.
bool unpool_plane_generic_code(const Pool2dShape& s, const float* gy, const uint8_t* code, float* gx) {
  std::memset(gx, 0, sizeof(float) * s.H * s.W);
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int c = code[oh * s.OW + ow];
      if (c >= int64_t(s.KH) * s.KW) return false;
      const int64_t ih = oh * s.SH - s.PH + c / s.KW, iw = ow * s.SW - s.PW + c % s.KW;
      if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return false;
      gx[ih * s.W + iw] += gy[oh * s.OW + ow];
    }
  return true;
}

}  // namespace

void pool_set_simd(bool enabled) { g_simd = enabled; }
int64_t pool_stream_fallbacks() { return g_stream_fallbacks.load(); }

// x (N,C,H,W) -> y (N,C,OH,OW), idx (N,C,OH,OW)
void max_pool2d_forward_reference(const Pool2dShape& s, const float* x, float* y, int64_t* idx) {
  const int64_t P = s.N * s.C, HW = s.H * s.W, OHW = s.OH * s.OW;
  for (int64_t p = 0; p < P; ++p)
    pool_plane_reference(s, x + p * HW, y + p * OHW, idx ? idx + p * OHW : nullptr, nullptr);
}

// x (N,C,H,W) -> y (N,C,OH,OW), idx or code (N,C,OH,OW) (either may be null)
void max_pool2d_forward(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code) {
  const int64_t P = s.N * s.C, HW = s.H * s.W, OHW = s.OH * s.OW;
  const bool small = HW < (int64_t(1) << 31) - 1;  // int32 positions inside a plane
  const bool is2x2 = s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PH == 0 && s.PW == 0 && small;
  const PoolKernels& k = pool_kernels();
  void (*plane)(const Pool2dShape&, const float*, float*, int64_t*, uint8_t*) =
      is2x2 ? k.fwd_2x2 : small ? k.fwd_any : pool_plane_reference;
  note_kernel(Op::max_pool2d, is2x2 ? k.name : small ? "window rows" : "reference");
  if (is2x2 && !idx && s.H == 2 * s.OH && s.W == 2 * s.OW) {  // windows tile the input: rows over all planes
    const int64_t rows = P * s.OH;
#pragma omp parallel if (P * HW >= kParallelMin)
    {
      int64_t r0, r1;
      split_range(rows, thread_id(), num_threads(), r0, r1);
      if (r0 < r1) k.fwd_flat_2x2(s.OW, r0, r1, x, y, code);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (P * HW >= kParallelMin)
  for (int64_t p = 0; p < P; ++p)
    plane(s, x + p * HW, y + p * OHW, idx ? idx + p * OHW : nullptr, code ? code + p * OHW : nullptr);
}

// gy (N,C,OH,OW), idx (N,C,OH,OW) -> gx (N,C,H,W)
bool max_pool2d_backward_reference(const Pool2dShape& s, const float* gy, const int64_t* idx, float* gx) {
  const int64_t P = s.N * s.C, HW = s.H * s.W, OHW = s.OH * s.OW;
  bool ok = true;
  for (int64_t p = 0; p < P; ++p) ok &= unpool_plane_generic(HW, OHW, gy + p * OHW, idx + p * OHW, gx + p * HW);
  return ok;
}

// gy (N,C,OH,OW), idx (N,C,OH,OW) -> gx (N,C,H,W)
bool max_pool2d_backward(const Pool2dShape& s, const float* gy, const int64_t* idx, float* gx) {
  const int64_t P = s.N * s.C, HW = s.H * s.W, OHW = s.OH * s.OW;
  const bool half = s.H >= 2 && s.W >= 2 && s.OH == s.H / 2 && s.OW == s.W / 2;
  UnpoolStream st;
  if (half && use_unpool_stream(s, st)) {
    note_kernel(Op::max_pool2d_backward, "avx512 vbmi stream");
    if (unpool_stream<false>(s, st, gy, idx, nullptr, gx)) return true;
    g_stream_fallbacks.fetch_add(1, std::memory_order_relaxed);
  }
  const PoolKernels& k = pool_kernels();
  bool (*plane2x2)(const Pool2dShape&, const float*, const int64_t*, float*) = k.bwd_2x2;
  note_kernel(Op::max_pool2d_backward, half ? k.name : "scatter");
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok) if (P * HW >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const float* g = gy + p * OHW;
    const int64_t* i = idx + p * OHW;
    float* out = gx + p * HW;
    if (!(half && plane2x2(s, g, i, out))) ok = ok && unpool_plane_generic(HW, OHW, g, i, out);
  }
  return ok;
}

// gy (N,C,OH,OW), code (N,C,OH,OW) -> gx (N,C,H,W)
bool max_pool2d_backward_compact(const Pool2dShape& s, const float* gy, const uint8_t* code, float* gx,
                                 const float* relu_y) {
  const int64_t P = s.N * s.C, HW = s.H * s.W, OHW = s.OH * s.OW;
  const bool is2x2 = s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PH == 0 && s.PW == 0;
  const PoolKernels& k = pool_kernels();
  if (is2x2) {
    UnpoolStream st;
    if (use_unpool_stream(s, st)) {
      note_kernel(Op::max_pool2d_backward, "avx512 vbmi stream");
      if (unpool_stream<true>(s, st, gy, code, relu_y, gx)) return true;
      g_stream_fallbacks.fetch_add(1, std::memory_order_relaxed);
    }
    note_kernel(Op::max_pool2d_backward, k.name);
    bool ok = true;
    if (s.H == 2 * s.OH && s.W == 2 * s.OW) {  // windows tile the input: one flat range of rows per thread
      const int64_t rows = P * s.OH;
#pragma omp parallel reduction(&& : ok) if (P * HW >= kParallelMin)
      {
        int64_t r0, r1;
        split_range(rows, thread_id(), num_threads(), r0, r1);
        if (r0 < r1) ok = k.bwd_flat_2x2_code(s.OW, r0, r1, gy, code, relu_y, gx) <= 3.f;
      }
      return ok;
    }
#pragma omp parallel for schedule(static) reduction(&& : ok) if (P * HW >= kParallelMin)
    for (int64_t p = 0; p < P; ++p)
      ok = k.bwd_2x2_code(s, gy + p * OHW, code + p * OHW, relu_y ? relu_y + p * OHW : nullptr, gx + p * HW) && ok;
    return ok;
  }
  note_kernel(Op::max_pool2d_backward, "scatter");
  std::vector<float> masked;  // the ReLU-masked gradient first (one workspace per call)
  if (relu_y) {
    masked.resize(size_t(P * OHW));
    relu_backward(P * OHW, gy, relu_y, masked.data());
    gy = masked.data();
  }
  bool ok = true;
#pragma omp parallel for schedule(static) reduction(&& : ok) if (P * HW >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) ok = unpool_plane_generic_code(s, gy + p * OHW, code + p * OHW, gx + p * HW) && ok;
  return ok;
}

}  // namespace fm
