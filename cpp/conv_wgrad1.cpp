// Weight gradient of a stride-1 convolution with few input channels (C <= 4: the first layer of an
// MNIST net), written once (conv_wgrad1.inl) against the SIMD layer and instantiated per ISA:
//
//   dw[k][c][r][t] = sum_{n,p,q} dy[n][k][p][q] * xpad[n][c][p+r][q+t],   db[k] = sum dy[n][k]
//
// Two kernels, both vectorised along the output pixels (every FMA lane useful) and both summing
// into one W-lane partial buffer (W = the ISA's vector width) per fixed group of 16 images,
// reduced groups first (in order), then lanes, so the result does not depend on the thread count:
//
// - direct ("flat"), used for 3x3: the image is expanded once into S-shifted planes
//   xs[c*S+t][h][q] = xpad[c][h][q+t], so that tap (c,r,t) at the flattened output pixel j = p*Q+q
//   is xs[c*S+t][r*Q + j], contiguous in j. A register tile of KB = 2 channels x R*S taps (one
//   channel with AVX2's 16 registers) stays in vector accumulators across a chunk of 8 images: per
//   W pixels 2 dy loads + 9 x loads + 18 FMAs (3x3, KB = 2).
//   On the test machine (AMD Zen 4, one 512-bit FMA per cycle) it runs at ~0.33 ns per FMA, ~90% of
//   the FMA peak; dy is prefetched one image ahead, since the hardware prefetcher does not follow
//   the jumps between images (worth ~15% at batch 256, where dy does not fit in L2).
//
// - Winograd along the kernel rows, used for 5x5: split the output rows into tiles of 4
//   (p = 4 tr + i); for a fixed tile row, column q and tap column t, the sum over i is a 1-D
//   correlation with R outputs, Winograd F(R, 4) with A = R + 3 points:
//     dw[.][r][t] = sum_a AT[r][a] M[a][t],  M[a][t] = sum_{n,tr,q} dyT[a][tr][q] * xT[a][t][tr][q],
//     dyT[a] = sum_i G[a][i] dy[4tr+i][q]   (a few adds, per channel k, fused into the main loop),
//     xT[a][t] = sum_b BT[a][b] xpad[4tr+b][q+t]   (once per image, shared by all K channels).
//   The multiply-adds per 4 output rows drop from 4*R*S = 100 to A*S = 40 (+ 15 transform ops).
//   The points are taken in pairs that share their even and odd halves ({0, A-1} are plain dy
//   rows), KB = 2 channels (1 on AVX2) x 2 points x 5 taps per pass over a chunk of 2 images; the
//   bias gradient is the sum of point 1 (G row [1 1 1 1]). The output transform AT runs once, in double. About
//   0.55 ns per FMA (the dy transform's adds and loads ride on the same ports), ~15% faster than the
//   direct kernel on 5x5 at batch 64. Rounding: ~4e-6 of max|dw| against float64 (tested: 1e-4).
//   For 3x3 the same scheme (F(3,4): 18 FMAs + 15 transform ops instead of 36 FMAs per 4 rows)
//   measured ~20% slower than the direct kernel on Zen 4: with one input channel the per-channel dy
//   transform is not amortised, its adds and the extra dy loads cost as much as the FMAs saved,
//   and storing the transformed dy instead is slower still (stores are expensive there).
#include "conv_wgrad1.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "buffers.hpp"
#include "common.hpp"
#include "dispatch.hpp"

// An empty asm that makes the compiler keep a vector in a register (one load, not one memory
// operand per FMA).
#if defined(__x86_64__) || defined(__i386__)
#define FM_WG1_KEEP(v) asm("" : "+v"(v))
#elif defined(__aarch64__)
#define FM_WG1_KEEP(v) asm("" : "+w"(v))
#else
#define FM_WG1_KEEP(v) (void)0
#endif

namespace fm {

namespace {

constexpr int G = 16;      // images per partial-sum group
constexpr int CHUNK = 8;   // direct kernel: images whose planes stay in L2 while every channel block passes
// Direct kernel: planes are PLANE floats apart (a compile-time stride, so every tap's address is a
// register plus an immediate and 25 taps need no 25 pointer registers; not a multiple of 4 KiB to
// avoid L1 set conflicts).
constexpr int PLANE = 1040;
constexpr int TR = 4;  // Winograd: dy rows per tile
// Winograd: row stride of the transformed x planes (a compile-time constant, so that the main loop
// addresses every x operand as one pointer plus an immediate; 4160 bytes, not a multiple of 4 KiB).
constexpr int JMAX = 1040;

// Per-thread scratch that lives across calls (grown when needed, never shrunk), so that a call does
// not map and fault in fresh pages for its buffers: slot i of the calling thread, n floats, 64-byte
// aligned, contents undefined.
float* scratch(int slot, size_t n) {
  static thread_local ScratchBuffer bufs[5];
  return bufs[slot].get(n);
}

// The direct kernel's plane buffer of the calling thread (scratch slot 1, n floats), zeroed when the
// buffer or the geometry changed since this thread's last call (build_planes writes only the
// entries that come from x; the rest must stay zero). Shared by every ISA: the layout does not
// depend on the vector width.
float* plane_scratch(const ConvShape& s, int Q, size_t n) {
  float* xs = scratch(1, n);
  static thread_local const float* last_buf = nullptr;
  static thread_local int last_geo[7];
  const int geo[7] = {s.C, s.H, s.W, s.ph, s.pw, s.S, Q};
  if (xs != last_buf || !std::equal(geo, geo + 7, last_geo)) {
    std::memset(xs, 0, sizeof(float) * n);
    last_buf = xs;
    std::copy(geo, geo + 7, last_geo);
  }
  return xs;
}

template <int R>
struct RowWino;

// F(5, 4): points 0, 1, -1, 2, -2, 1/2, -1/2, inf; the +-1/2 rows of G scaled by 8 (BT rows by 1/8):
// G (8x4) = [1 0 0 0; 1 1 1 1; 1 -1 1 -1; 1 2 4 8; 1 -2 4 -8; 8 4 2 1; 8 -4 2 -1; 0 0 0 1]
// (applied in group_transform). Checked: sum_k AT[j][k] G[k][i] BT[k][t] = [t == i + j] exactly.
template <>
struct RowWino<5> {
  static constexpr int A = 8;
  static constexpr float BT[8][8] = {
      {1.f, 0.f, -21.f / 4, 0.f, 21.f / 4, 0.f, -1.f, 0.f},
      {0.f, -2.f / 9, -2.f / 9, 17.f / 18, 17.f / 18, -2.f / 9, -2.f / 9, 0.f},
      {0.f, 2.f / 9, -2.f / 9, -17.f / 18, 17.f / 18, 2.f / 9, -2.f / 9, 0.f},
      {0.f, 1.f / 180, 1.f / 360, -1.f / 36, -1.f / 72, 1.f / 45, 1.f / 90, 0.f},
      {0.f, -1.f / 180, 1.f / 360, 1.f / 36, -1.f / 72, -1.f / 45, 1.f / 90, 0.f},
      {0.f, 8.f / 45, 16.f / 45, -2.f / 9, -4.f / 9, 2.f / 45, 4.f / 45, 0.f},
      {0.f, -8.f / 45, 16.f / 45, 2.f / 9, -4.f / 9, -2.f / 45, 4.f / 45, 0.f},
      {0.f, -1.f, 0.f, 21.f / 4, 0.f, -21.f / 4, 0.f, 1.f},
  };
  static constexpr double AT[5][8] = {
      {1, 1, 1, 1, 1, 1, 1, 0},
      {0, 1, -1, 2, -2, 0.5, -0.5, 0},
      {0, 1, 1, 4, 4, 0.25, 0.25, 0},
      {0, 1, -1, 8, -8, 0.125, -0.125, 0},
      {0, 1, 1, 16, 16, 0.0625, 0.0625, 1},
  };
};

struct Geo {
  int P, Q, TRn;  // output rows, columns, tile rows (ceil(P / 4))
  int TRf;        // full tile rows (all 4 dy rows inside the plane): P / 4
  int Qp;         // Q rounded up to 16 (a multiple of every vector width): columns per tile row in xt
  int Wps;        // row stride of the padded image (Q + S - 1 rounded up to 16)
  int Hx;         // rows of the padded image the transform reads: 4 * TRn + R - 1
  int seg;        // floats of one image in a transformed x row: TRn * Qp
};

Geo make_geo(const ConvShape& s, int R) {
  Geo g;
  g.P = s.P();
  g.Q = s.Q();
  g.TRn = (g.P + TR - 1) / TR;
  g.TRf = g.P / TR;
  g.Qp = (g.Q + 15) / 16 * 16;
  g.Wps = (g.Q + s.S - 1 + 15) / 16 * 16;
  g.Hx = TR * g.TRn + R - 1;
  g.seg = g.TRn * g.Qp;
  return g;
}

// The shapes the Winograd kernel handles: the transformed rows of one image fit a JMAX row, at most
// 64 columns, padding up to 8.
bool winograd_rows_fits(const ConvShape& s) {
  const int TRn = (s.P() + TR - 1) / TR, Qp = (s.Q() + 15) / 16 * 16;
  return TRn * Qp <= JMAX && Qp <= 64 && s.ph <= 8;
}

// The points of transform group GRP: {0, A-1} (dy rows 0 and 3 as they are), then pairs
// {2 GRP - 1, 2 GRP} that share their even and odd halves.
template <int A, int GRP>
constexpr int point(int j) {
  return GRP == 0 ? (j == 0 ? 0 : A - 1) : 2 * GRP - 1 + j;
}

// Channel blocks of up to KBL channels, the last two balanced (e.g. 3+3+3+3+2+2 rather than ...+3+1).
std::vector<int> channel_blocks(int K, int KBL) {
  std::vector<int> kblk;
  for (int k = 0; k < K;) {
    int n = std::min(KBL, K - k);
    if (K - k > KBL && K - k < 2 * KBL) n = (K - k + 1) / 2;
    kblk.push_back(n);
    k += n;
  }
  return kblk;
}

// dw[r][t] = sum_a AT[r][a] M[a][t] (M: A x R in double), rounded to float.
template <int R>
void row_output_transform(const double* M, float* dw) {
  constexpr int A = RowWino<R>::A;
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < R; ++t) {
      double a = 0.0;
      for (int p = 0; p < A; ++p) a += RowWino<R>::AT[r][p] * M[(size_t)p * R + t];
      dw[r * R + t] = (float)a;
    }
}

// build_info()["kernels"] names, per ISA level (generic, neon, avx2, avx512): direct, Winograd rows.
constexpr const char* kWgrad1Names[4][2] = {
    {"generic first-layer wgrad direct", "generic first-layer wgrad winograd rows"},
    {"neon first-layer wgrad direct", "neon first-layer wgrad winograd rows"},
    {"avx2 first-layer wgrad direct", "avx2 first-layer wgrad winograd rows"},
    {"avx512 first-layer wgrad direct", "avx512 first-layer wgrad winograd rows"}};

}  // namespace

// The first-layer kernels of one instruction set.
struct Wgrad1Kernels {
  const char* (*run)(const ConvShape& s, const float* dy, const float* x, float* dw, float* db);
};

}  // namespace fm

#define FM_KERNELS_FILE "conv_wgrad1.inl"
#include "simd/instantiate.hpp"

namespace fm {

bool conv2d_backward_weight_first_layer(const ConvShape& s, const float* dy, const float* x, float* dw, float* db) {
  // Every vector ISA runs these kernels; generic (one lane) runs conv2d.cpp's portable loops.
  // Measured (2-core Sapphire Rapids KVM, 2 threads, best of 9, ms; batch 64 / 256), against the
  // direct kernel AVX2 ran before (FASTMNIST_ISA=avx2):
  //   1->16 3x3 p1   0.109 / 0.45  vs 0.158 / 0.665
  //   1->16 5x5 p0   0.161 / 0.68  vs 0.191 / 0.80
  //   1->24 5x5 p0   0.226 / 1.00  vs 0.37  / 1.56
  // AVX-512: the same times as the intrinsics version it replaces (0.08 / 0.34, 0.14 / 0.62,
  // 0.20 / 0.87, interleaved runs). NEON: not timed (only qemu here); the same register tiles as
  // AVX-512 (32 registers).
  if (isa() == Isa::generic) return false;
  if (s.N <= 0 || s.sh != 1 || s.sw != 1 || s.C > 4 || s.R != s.S || (s.R != 3 && s.R != 5) || s.P() < 1 ||
      s.Q() < 1)
    return false;
  const char* name = FM_PICK(kWgrad1).run(s, dy, x, dw, db);
  if (name) note_kernel(Op::conv2d_backward_weight, name);
  return name != nullptr;
}

}  // namespace fm
