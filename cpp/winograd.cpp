// Winograd convolution F(m x m, r x r), stride 1: forward, input gradient, weight gradient.
//
//   y_tile = AT [ (G g G^T) (.) (BT d BT^T) ] AT^T        (d: A x A input tile, A = m + r - 1)
//
// Variants (points 0, 1, -1, 1/2, -2, inf for the 6 x 6 tiles; chosen for float32 accuracy):
//   F(2x2,3x3)  4x4 tiles, 16 products for 36 MACs (2.25x fewer)
//   F(4x4,3x3)  6x6 tiles, 36 products for 144 MACs (4x fewer; default for 3x3 where partial
//               tiles do not eat the saving, see pick_tile)
//   F(2x2,5x5)  6x6 tiles, 36 products for 100 MACs (2.78x fewer)
// Error against float64 on MNIST activations: F(2x2) ~3e-7, F(4x4,3x3) / F(2x2,5x5) ~1.5-2.6e-6
// of max|y| (direct float32: ~7e-7); the tests allow 2e-5.
//
// Written once (winograd.inl) against the SIMD layer and instantiated per ISA: one vector holds
// LN = S::W channels (16 on AVX-512, 8 on AVX2, 4 on NEON); channel counts are padded to 16, a
// multiple of every width, so the buffers have the same layout on every ISA.
// Forward, per image and thread (all in L2 for the MNIST layers):
//   xT [Hb][Wb][Cp]   zero-padded image, channels innermost (Cp = C rounded up to 16)
//   V  [A*A][T][Cp]   input transform of every tile (T = tiles per image)
//   U  [A*A][C][Kp]   weight transform (once per call, in double, rounded to float)
//   Mo [A*A][T][Kp]   per transform position xi: Mo[xi] = V[xi] (T x C) * U[xi] (C x Kp)
//   yT [M][Wy][Kp]    output transform (+ bias, ReLU) of one row of tiles, channels innermost;
//                     transposed into NCHW before the next row (so it stays in L1).
// The per-position products run in a register-blocked micro-kernel: TB tiles x 2 LN (or LN) output
// channels in vector accumulators, one weight row load and TB broadcasts per input channel. The
// [A*A][T][.] buffers keep an odd number of cache lines between positions (position_stride).
// Input gradient: the forward on dy with flipped, transposed weights and padding R-1-pad, or (when
// that needs fewer tiles, i.e. padding below R/2) the adjoint of the forward: Dy = AT^T dy AT per
// output tile, dV = Dy * U', overlapping input windows += BT^T dV BT.
// Weight gradient: the adjoint in the weights: dU[xi] = V[xi]^T Dy[xi] summed over tiles and images
// (partials per fixed group of 16 images, reduced in order in double; the tiles of 4 images at a
// time go through one pass of the products), dw = G^T dU G; the bias gradient is summed while dy
// is transposed to channels-last.
// OpenMP runs over the images (dynamic schedule), each thread allocates its buffers once.
// Unlike direct convolution, a NaN / Inf input spreads to every output of the tiles whose window
// holds it (the transforms mix all pixels of a window).
#include "winograd.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "buffers.hpp"
#include "common.hpp"
#include "dispatch.hpp"

namespace fm {

namespace {

// ---------------------------------------------------------------------------------------------
// transform matrices (derived by Cook-Toom with exact rationals; see the header comment)
// ---------------------------------------------------------------------------------------------
struct F23 {
  static constexpr int M = 2, R = 3, A = 4;
  static constexpr float BT[A][A] = {{-1, 0, 1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
  static constexpr float AT[M][A] = {{1, 1, 1, 0}, {0, 1, -1, 1}};
  static constexpr double G[A][R] = {{-1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
};

// BT of the 6-point (0, 1, -1, 1/2, -2, inf) transforms, shared by F(4,3) and F(2,5).
#define FM_WG_BT6                                                                                   \
  {{1, -1.5f, -2, 1.5f, 1, 0}, {0, -1, 0.5f, 2.5f, 1, 0}, {0, 1, -2.5f, 0.5f, 1, 0},              \
   {0, -2, -1, 2, 1, 0},       {0, 0.5f, -1, -0.5f, 1, 0}, {0, 1, -1.5f, -2, 1.5f, 1}}

struct F43 {
  static constexpr int M = 4, R = 3, A = 6;
  static constexpr float BT[A][A] = FM_WG_BT6;
  static constexpr float AT[M][A] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, -2, 0}, {0, 1, 1, 0.25f, 4, 0}, {0, 1, -1, 0.125f, -8, 1}};
  static constexpr double G[A][R] = {{1, 0, 0},
                                     {1. / 3, 1. / 3, 1. / 3},
                                     {-1. / 3, 1. / 3, -1. / 3},
                                     {-16. / 15, -8. / 15, -4. / 15},
                                     {1. / 15, -2. / 15, 4. / 15},
                                     {0, 0, 1}};
};

struct F25 {
  static constexpr int M = 2, R = 5, A = 6;
  static constexpr float BT[A][A] = FM_WG_BT6;
  static constexpr float AT[M][A] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, -2, 1}};
  static constexpr double G[A][R] = {{1, 0, 0, 0, 0},
                                     {1. / 3, 1. / 3, 1. / 3, 1. / 3, 1. / 3},
                                     {-1. / 3, 1. / 3, -1. / 3, 1. / 3, -1. / 3},
                                     {-16. / 15, -8. / 15, -4. / 15, -2. / 15, -1. / 15},
                                     {1. / 15, -2. / 15, 4. / 15, -8. / 15, 16. / 15},
                                     {0, 0, 0, 0, 1}};
};
#undef FM_WG_BT6

// Stride between the transform positions of a [A*A][T][16*j] buffer: an odd number of cache lines,
// so that the A*A loads / stores of one tile do not all fall into a few L1 sets (T * Kp floats is
// a multiple of 2 KiB for T = 16 tiles).
size_t position_stride(size_t n) { return (n / 16) % 2 == 0 ? n + 16 : n; }

// Prefetches part i of `parts` of the bytes [p, p + bytes) into L2 (the next image's input and
// this image's output, spread over the compute-bound products).
inline void prefetch_part(const void* p, size_t bytes, int i, int parts, bool write) {
  const char* c = static_cast<const char*>(p);
  const size_t lines = (bytes + 63) / 64, b = lines * i / parts, e = lines * (i + 1) / parts;
  for (size_t l = b; l < e; ++l) {
    if (write)
      __builtin_prefetch(c + l * 64, 1, 2);
    else
      __builtin_prefetch(c + l * 64, 0, 2);
  }
}

// Per-thread scratch buffers kept across calls (ScratchBuffer: grow-only, freed when the thread
// ends), so that the workspaces of a few hundred KiB do not come back from the OS with page faults on
// every call. slot picks the buffer; the contents are undefined unless `zero`. The data is 64-byte
// aligned: every buffer row is a multiple of 16 floats, so each AVX-512 load / store of the kernels
// is one cache line (malloc's 16-byte alignment split every one of them across two lines).
struct Scratch {
  float* p;
  size_t n;
  float* data() const { return p; }
  float* begin() const { return p; }
  float* end() const { return p + n; }
};
Scratch scratch(int slot, size_t n, bool zero = false) {
  thread_local ScratchBuffer bufs[6];
  float* p = bufs[slot].get(n);
  if (zero) std::fill(p, p + n, 0.f);
  return {p, n};
}

// Splits n into the fewest blocks of at most `most`, balanced in size: (first, count) pairs.
std::vector<std::pair<int, int>> balanced_blocks(int n, int most) {
  std::vector<std::pair<int, int>> bl;
  const int nb = (n + most - 1) / most;
  for (int i = 0, t0 = 0; i < nb; ++i) {
    const int cnt = n / nb + (i < n % nb ? 1 : 0);
    bl.emplace_back(t0, cnt);
    t0 += cnt;
  }
  return bl;
}

}  // namespace

// The Winograd kernels of one instruction set (m: the output tile size from pick_tile).
struct WinogradKernels {
  void (*forward)(const ConvShape& s, const float* x, const float* w, bool flip, const float* b, float* y, bool relu,
                  int m);
  void (*backward_input_adjoint)(const ConvShape& s, const float* dy, const float* w, float* dx, int m);
  void (*backward_weight)(const ConvShape& s, const float* dy, const float* x, float* dw, float* db, int m);
};

}  // namespace fm

#define FM_KERNELS_FILE "winograd.inl"
#include "simd/instantiate.hpp"

namespace fm {

namespace {

// Output tile size: 2 for 5x5; for 3x3 F(4x4,3x3) where its 36 products per 4x4 tile come to
// below 85% of F(2x2,3x3)'s 16 per 2x2 tile, partial tiles counted (its transforms cost more).
// Measured on 16->32 @14x14, batch 64, 1 thread: F(4x4) takes 0.87 (forward), 0.84 (input grad),
// 0.90 (weight grad) of F(2x2)'s time; accuracy on MNIST activations (batch 4 x 256, against
// float64): forward 1.4e-6, input grad 2.6e-6 of max|ref| (F(2x2): 3e-7; direct: 7e-7).
int pick_tile(const ConvShape& s, int tile) {
  if (s.R == 5) return 2;
  if (tile == 2 || tile == 4) return tile;
  const long t2 = (long)((s.P() + 1) / 2) * ((s.Q() + 1) / 2), t4 = (long)((s.P() + 3) / 4) * ((s.Q() + 3) / 4);
  return 36 * t4 * 20 < 16 * t2 * 17 ? 4 : 2;
}

// The kernels of the current instruction set, and the name of the one that runs (for
// build_info()["kernels"]): "<isa> winograd F(mxm,rxr)".
const WinogradKernels& kernels() { return FM_PICK(kWinograd); }
const char* kernel_name(int m, int R) {
  static constexpr const char* names[4][3] = {
      {"generic winograd F(2x2,3x3)", "generic winograd F(4x4,3x3)", "generic winograd F(2x2,5x5)"},
      {"neon winograd F(2x2,3x3)", "neon winograd F(4x4,3x3)", "neon winograd F(2x2,5x5)"},
      {"avx2 winograd F(2x2,3x3)", "avx2 winograd F(4x4,3x3)", "avx2 winograd F(2x2,5x5)"},
      {"avx512 winograd F(2x2,3x3)", "avx512 winograd F(4x4,3x3)", "avx512 winograd F(2x2,5x5)"}};
  return names[int(isa())][R == 5 ? 2 : m == 4 ? 1 : 0];
}

void run_forward(Op op, const ConvShape& s, const float* x, const float* w, bool flip, const float* b, float* y,
                 bool relu, int tile) {
  const int m = pick_tile(s, tile);
  note_kernel(op, kernel_name(m, s.R));
  kernels().forward(s, x, w, flip, b, y, relu, m);
}

void run_backward_input_adjoint(const ConvShape& s, const float* dy, const float* w, float* dx, int tile) {
  const int m = pick_tile(s, tile);
  note_kernel(Op::conv2d_backward_input, kernel_name(m, s.R));
  kernels().backward_input_adjoint(s, dy, w, dx, m);
}

void run_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db, int tile) {
  const int m = pick_tile(s, tile);
  note_kernel(Op::conv2d_backward_weight, kernel_name(m, s.R));
  kernels().backward_weight(s, dy, x, dw, db, m);
}

}  // namespace

// The vector kernels need 4 lanes or more (AVX2, AVX-512, NEON); the portable build (generic,
// FASTMNIST_ISA=generic) runs the direct / im2col kernels instead.
bool winograd_available(const ConvShape& s) {
  return isa() != Isa::generic && s.sh == 1 && s.sw == 1 && s.R == s.S && (s.R == 3 || s.R == 5) && s.N > 0;
}

// Measured on this project's machine, AVX-512 (1 thread, batch 64, Winograd time / direct time):
// 16->32 3x3 @14x14 0.62 (forward), 0.60 (input grad), 0.67 (weight grad); 5x5 0.50 / 0.50 / 0.55;
// 8->32 3x3 forward 0.85; 32->8 3x3 forward 1.04 (8 of 16 lanes idle); 8->8 3x3 1.55; 8->16 5x5
// 0.74; weight gradient 8->8 0.95, 64->64 @7x7 0.84. AVX2 (same machine, FASTMNIST_ISA=avx2):
// 16->32 3x3 @14x14 0.55 (forward), 0.53 (input grad), 0.73 (weight grad); 16->32 5x5 @12x12
// (padding 0) 0.52 / 0.26.
bool winograd_preferred(const ConvShape& s) {
  return winograd_available(s) && s.C >= 8 && (s.K >= 16 || s.R == 5) && s.P() >= 4 && s.Q() >= 4;
}

void winograd_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                      int tile) {
  run_forward(Op::conv2d_forward, s, x, w, false, b, y, relu, tile);
}

// The input-gradient convolution: dy (N,K,P,Q) with w' (C,K,R,S), padding R-1-ph -> dx (N,C,H,W).
static ConvShape transposed_shape(const ConvShape& s) {
  return ConvShape{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, s.R - 1 - s.ph, s.S - 1 - s.pw};
}

bool winograd_backward_input_available(const ConvShape& s) { return winograd_available(s); }

bool winograd_backward_input_preferred(const ConvShape& s) {
  const ConvShape t{s.N, s.K, s.P(), s.Q(), s.C, s.R, s.S, 1, 1, s.R / 2, s.S / 2};
  return winograd_available(s) && winograd_preferred(t);
}

// Two ways: the forward Winograd on the transposed convolution (tiles over dx; needs pad <= R-1)
// or the adjoint of the forward (tiles over dy, overlapping windows summed): whichever has fewer tiles.
void winograd_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, int tile) {
  const int m = s.R == 5 ? 2 : pick_tile(s, tile);
  const long tiles_dy = (long)((s.P() + m - 1) / m) * ((s.Q() + m - 1) / m);
  const long tiles_dx = (long)((s.H + m - 1) / m) * ((s.W + m - 1) / m);
  if (s.ph <= s.R - 1 && s.pw <= s.S - 1 && tiles_dx <= tiles_dy)
    run_forward(Op::conv2d_backward_input, transposed_shape(s), dy, w, true, nullptr, dx, false, tile);
  else
    run_backward_input_adjoint(s, dy, w, dx, tile);
}

bool winograd_backward_weight_preferred(const ConvShape& s) {
  return winograd_available(s) && s.C >= 8 && s.K >= 8 && s.P() >= 4 && s.Q() >= 4;
}

void winograd_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                              int tile) {
  run_backward_weight(s, dy, x, dw, db, tile);
}

static int impl_tile(ConvImpl impl) {
  return impl == ConvImpl::winograd_f2 ? 2 : impl == ConvImpl::winograd_f4 ? 4 : 0;
}

bool winograd_try_forward(const ConvShape& s, const float* x, const float* w, const float* b, float* y, bool relu,
                          ConvImpl& impl) {
  if (impl == ConvImpl::direct) impl = ConvImpl::fast;  // the direct kernels only
  else if (is_winograd(impl) ? winograd_available(s) : impl == ConvImpl::fast && winograd_preferred(s)) {
    winograd_forward(s, x, w, b, y, relu, impl_tile(impl));
    return true;
  }
  if (is_winograd(impl)) impl = ConvImpl::fast;
  return false;
}

bool winograd_try_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, ConvImpl& impl) {
  if (impl == ConvImpl::direct) impl = ConvImpl::fast;
  else if (is_winograd(impl) ? winograd_backward_input_available(s)
                             : impl == ConvImpl::fast && winograd_backward_input_preferred(s)) {
    winograd_backward_input(s, dy, w, dx, impl_tile(impl));
    return true;
  }
  if (is_winograd(impl)) impl = ConvImpl::fast;
  return false;
}

bool winograd_try_backward_weight(const ConvShape& s, const float* dy, const float* x, float* dw, float* db,
                                  ConvImpl& impl) {
  if (impl == ConvImpl::direct) impl = ConvImpl::fast;
  else if (is_winograd(impl) ? winograd_available(s)
                             : impl == ConvImpl::fast && winograd_backward_weight_preferred(s)) {
    winograd_backward_weight(s, dy, x, dw, db, impl_tile(impl));
    return true;
  }
  if (is_winograd(impl)) impl = ConvImpl::fast;
  return false;
}

}  // namespace fm