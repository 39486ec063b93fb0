// Warp plane kernel, written once against the SIMD traits `S` and compiled per ISA by
// simd/instantiate.hpp (augment.cpp: the driver). The coordinate loop (row_coords) is vectorised by
// the compiler at the region's width; the bilinear taps take W pixels at a time with gathers.
static void warp_plane_rows(const float* pad, int64_t PW, const double* M, float* o, int64_t H, int64_t W,
                            bool projective, float* sxs, float* sys) {
  using V = typename S::V;
  for (int64_t i = 0; i < H; ++i) {
    row_coords(M, i, H, W, projective, sxs, sys);
    float* orow = o + i * W;
    int64_t j = 0;
    if (S::W > 1)
      for (; j + S::W <= W; j += S::W) {
        const V sx = S::load(sxs + j), sy = S::load(sys + j);
        const V x0 = S::trunc(sx), y0 = S::trunc(sy);  // sx, sy >= 0: truncation is floor
        const V ax = S::sub(sx, x0), ay = S::sub(sy, y0);
        const V a = S::gather_xy(pad, x0, y0, int32_t(PW)), b = S::gather_xy(pad + 1, x0, y0, int32_t(PW));
        const V c = S::gather_xy(pad + PW, x0, y0, int32_t(PW)), d = S::gather_xy(pad + PW + 1, x0, y0, int32_t(PW));
        const V top = S::fma(ax, S::sub(b, a), a), bot = S::fma(ax, S::sub(d, c), c);
        S::store(orow + j, S::fma(ay, S::sub(bot, top), top));
      }
    row_taps(pad, PW, sxs, sys, orow, j, W);
  }
}

const AugmentKernels kAugment{&warp_plane_rows, S::name};
