// Max-pool plane and row kernels, written once against the SIMD traits `S` and compiled per ISA
// by simd/instantiate.hpp (driver and the AVX-512 VBMI stream specialisation: pool.cpp).

// One plane, any geometry, vectorised across each output row: the columns whose windows lie
// inside the input (no clipping) run window position by window position over all of them at
// once, with selects instead of branches; the few border columns use pool_one.
static void pool_plane_any(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code) {
  const int64_t W = s.W, OW = s.OW, SW = s.SW;
  // interior columns: ow*SW - PW >= 0 and ow*SW - PW + KW <= W
  int64_t lo = std::min<int64_t>((s.PW + SW - 1) / SW, OW);
  int64_t hi = W + s.PW - s.KW >= 0 ? std::min<int64_t>((W + s.PW - s.KW) / SW + 1, OW) : 0;
  if (hi < lo) hi = lo;
  constexpr int64_t kChunk = 256;
  int32_t k[kChunk];
  auto border = [&](int64_t oh, int64_t ow) {
    const int64_t mi = pool_one(s, x, oh, ow, y);
    if (idx) idx[oh * OW + ow] = mi;
    if (code) code[oh * OW + ow] = window_code(s, oh, ow, mi);
  };
  for (int64_t oh = 0; oh < s.OH; ++oh) {
    for (int64_t ow = 0; ow < lo; ++ow) border(oh, ow);
    for (int64_t ow = hi; ow < OW; ++ow) border(oh, ow);
    int64_t h0 = oh * s.SH - s.PH, h1 = std::min<int64_t>(h0 + s.KH, s.H);
    h0 = std::max<int64_t>(h0, 0);
    for (int64_t c0 = lo; c0 < hi; c0 += kChunk) {
      const int64_t n = std::min(kChunk, hi - c0);
      float* yr = y + oh * OW + c0;
      const int32_t first = int32_t(h0 * W + c0 * SW - s.PW);  // window start of column c0
      for (int64_t j = 0; j < n; ++j) {
        yr[j] = -std::numeric_limits<float>::infinity();
        k[j] = first + int32_t(j * SW);
      }
      for (int64_t ih = h0; ih < h1; ++ih)
        for (int64_t kw = 0; kw < s.KW; ++kw) {
          const int32_t p0 = int32_t(ih * W + c0 * SW - s.PW + kw);
          const float* src = x + p0;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) {
            float v = src[j * SW], m = yr[j];
            bool t = (v > m) | (v != v);
            yr[j] = t ? v : m;
            k[j] = t ? p0 + int32_t(j * SW) : k[j];
          }
        }
      if (idx)
        for (int64_t j = 0; j < n; ++j) idx[oh * OW + c0 + j] = k[j];
      if (code)
        for (int64_t j = 0; j < n; ++j) code[oh * OW + c0 + j] = window_code(s, oh, c0 + j, k[j]);
    }
  }
}

// The 2x2 merge of W windows: top row (2W floats as t0, t1) and bottom row (b0, b1) ->
// maxima m and window offsets k (0..3, as floats), with PyTorch's rule (in row-major window order
// a strictly greater value or a NaN takes over).
static FM_INLINE void merge_2x2(typename S::V t0, typename S::V t1, typename S::V b0, typename S::V b1,
                                typename S::V& m, typename S::V& k) {
  typename S::V e, o;
  typename S::M t;
  S::unzip(t0, t1, m, o);
  t = S::either(S::gt(o, m), S::is_nan(o));
  m = S::select(t, o, m);
  k = S::select(t, S::set1(1.f), S::zero());
  S::unzip(b0, b1, e, o);
  t = S::either(S::gt(e, m), S::is_nan(e));
  m = S::select(t, e, m);
  k = S::select(t, S::set1(2.f), k);
  t = S::either(S::gt(o, m), S::is_nan(o));
  m = S::select(t, o, m);
  k = S::select(t, S::set1(3.f), k);
}

// One plane, 2x2 window, stride 2, no padding: x (H,W) -> y (H/2,W/2), idx or code (may be null).
// W outputs per step (merge_2x2); the window offset 0..3 of each maximum is kept as a float lane
// and turned into codes or int64 positions per row.
static void pool_plane_2x2(const Pool2dShape& s, const float* x, float* y, int64_t* idx, uint8_t* code) {
  using V = typename S::V;
  const int64_t W = s.W, OW = s.OW;
  float kr[256 + 16];  // window offsets of one row piece (int64 output)
  for (int64_t oh = 0; oh < s.OH; ++oh) {
    const float* r0 = x + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t o0 = 0; o0 < OW; o0 += 256) {
      const int64_t len = std::min<int64_t>(256, OW - o0);
      for (int64_t j = 0; j < len; j += S::W) {
        const int n = int(std::min<int64_t>(S::W, len - j)), n2 = 2 * n;
        const int na = n2 < S::W ? n2 : S::W, nb = n2 - na;
        const int64_t c = 2 * (o0 + j);
        V m, k;
        merge_2x2(S::load_n(r0 + c, na), S::load_n(r0 + c + S::W, nb), S::load_n(r1 + c, na),
                  S::load_n(r1 + c + S::W, nb), m, k);
        if (n == S::W) S::store(y + oh * OW + o0 + j, m);
        else S::store_n(y + oh * OW + o0 + j, m, n);
        if (code && S::W > 1) S::store_u8_n(code + oh * OW + o0 + j, k, n);
        else if (idx || code) S::store_n(kr + j, k, n);
      }
      if (code && S::W == 1) {  // one lane: a separate (vectorisable) conversion pass
        uint8_t* cr = code + oh * OW + o0;
        for (int64_t j = 0; j < len; ++j) cr[j] = uint8_t(int32_t(kr[j]));
      }
      if (idx && !code) {
        int64_t* ir = idx + oh * OW + o0;
        const int64_t corner = 2 * oh * W + 2 * o0;
        for (int64_t j = 0; j < len; ++j) {
          const int32_t c = int32_t(kr[j]);
          ir[j] = corner + 2 * j + (c & 1) + (c >> 1) * W;
        }
      }
    }
  }
}

// Output rows r0..r1 of a 2x2 / stride 2 pool whose windows tile the input (H == 2*OH, W == 2*OW),
// counted over all planes: row r reads the input rows at x + 4*OW*r and x + 4*OW*r + 2*OW and
// writes y and code (may be null) at OW*r. W outputs per step (merge_2x2); a row
// longer than W ends with a step overlapping the one before (the same values stored twice), a
// shorter one loads and stores whole vectors whose lanes past the row spill into the rows after it
// (which overwrite them), masked only where a load would pass the last input row or a store the
// last output row.
static void pool_rows_2x2(int64_t OW, int64_t r0, int64_t r1, const float* x, float* y, uint8_t* code) {
  using V = typename S::V;
  constexpr int W = S::W;
  auto step = [&](int64_t o, const float* r0p, int n) {  // outputs o..o+n (n <= W), top input row r0p
    const float* r1p = r0p + 2 * OW;
    const int n2 = 2 * n, na = n2 < W ? n2 : W, nb = n2 - na;
    const bool whole = n == W;
    V m, k;
    if (whole) merge_2x2(S::load(r0p), S::load(r0p + W), S::load(r1p), S::load(r1p + W), m, k);
    else merge_2x2(S::load_n(r0p, na), S::load_n(r0p + W, nb), S::load_n(r1p, na), S::load_n(r1p + W, nb), m, k);
    if (whole) S::store(y + o, m);
    else S::store_n(y + o, m, n);
    if (code) S::store_u8_n(code + o, k, n);
  };
  const int64_t in_end = r1 * 4 * OW, out_end = r1 * OW;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t o = r * OW;
    const float* top = x + 4 * OW * r;
    if (OW >= W) {
      for (int64_t j = 0; j + W <= OW; j += W) step(o + j, top + 2 * j, W);
      if (OW % W) step(o + OW - W, top + 2 * (OW - W), W);
    } else if (4 * OW * r + 2 * OW + 2 * W <= in_end && o + W <= out_end) {
      step(o, top, W);
    } else {
      step(o, top, int(OW));
    }
  }
}

// m ? v : 0 (a plain AND of the mask on AVX2, where a blend costs more).
static FM_INLINE typename S::V keep(typename S::M m, typename S::V v) {
#if FM_ISA_LEVEL == 2
  return _mm256_and_ps(m, v);
#else
  return S::select(m, v, S::zero());
#endif
}

// Output rows r0..r1 of the 2x2 / stride 2 backward from window codes 0..3 (a larger code is
// reported through the returned maximum): output row r has its OW gradients at g + r*OW (codes
// likewise, relu_y too when non-null: the gradient counts as 0 where relu_y <= 0) and writes the
// 2*OW floats of its top input row at x + r*pitch and of its bottom row at x + r*pitch + down.
// Every element of those rows is written, no zero pass, no scatter. W gradients per step: a code
// is compared with the four window offsets in gradient order, then the kept values are
// interleaved into column pairs (zip). A row longer than W ends with a step overlapping the one
// before (the same values stored twice); a shorter one stores whole vectors and lets the lanes
// past its end spill forward into the rows after it, which overwrite them, except where a store
// would reach `limit` (end of this call's output) or a load past the last row: masked there.
// Returns the largest code seen.
static float unpool_rows_2x2_code(int64_t OW, int64_t r0, int64_t r1, const float* g, const uint8_t* code,
                                  const float* relu_y, float* x, int64_t pitch, int64_t down, const float* limit) {
  using V = typename S::V;
  constexpr int W = S::W;
  const V z = S::zero(), k1 = S::set1(1.f), k2 = S::set1(2.f), k3 = S::set1(3.f);
  V acc = z;
  const int64_t last_in = r1 * OW;  // end of the gradients this call may read
  auto step = [&](int64_t i, float* top, int n) {  // gradients i..i+n (n <= W), output from top
    const bool whole = n == W;
    V v = whole ? S::load(g + i) : S::load_n(g + i, n);
    const V c = S::load_u8_n(code + i, n);
    if (relu_y) v = S::select(S::le(whole ? S::load(relu_y + i) : S::load_n(relu_y + i, n), z), z, v);
    acc = S::max(acc, c);
    V tlo, thi, blo, bhi;
    S::zip(keep(S::eq(c, z), v), keep(S::eq(c, k1), v), tlo, thi);
    S::zip(keep(S::eq(c, k2), v), keep(S::eq(c, k3), v), blo, bhi);
    float* bot = top + down;
    if (whole) {  // top first: its spill (short rows) lands where the bottom stores follow
      S::store(top, tlo), S::store(top + W, thi), S::store(bot, blo), S::store(bot + W, bhi);
    } else {
      const int n2 = 2 * n, na = n2 < W ? n2 : W;
      S::store_n(top, tlo, na), S::store_n(top + W, thi, n2 - na);
      S::store_n(bot, blo, na), S::store_n(bot + W, bhi, n2 - na);
    }
  };
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = r * OW;
    float* top = x + r * pitch;
    // claim the output lines 2 KB ahead for writing (prefetchw; the stores above measured 13 %
    // slower without it at 8 lanes, batch 256: the hardware prefetcher alone keeps too few
    // read-for-ownership requests in flight; unchanged at 16 lanes)
    for (int64_t f = 0; f < pitch; f += 16) __builtin_prefetch(top + 512 + f, 1, 3);
    if (OW >= W) {
      for (int64_t j = 0; j + W <= OW; j += W) step(i + j, top + 2 * j, W);
      if (OW % W) step(i + OW - W, top + 2 * (OW - W), W);
    } else if (i + W <= last_in && top + down + 2 * W <= limit) {
      step(i, top, W);
    } else {
      step(i, top, int(OW));
    }
  }
  return S::reduce_max(acc);
}

// One plane, 2x2 / stride 2 / OH == H/2, OW == W/2, from codes: false on a code > 3. An odd H or
// W leaves a last row / column that no window covers: zeroed.
static bool unpool_plane_2x2_code(const Pool2dShape& s, const float* gy, const uint8_t* code, const float* relu_y,
                                  float* gx) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  float worst = 0.f;
  if (W == 2 * OW) {
    worst = unpool_rows_2x2_code(OW, 0, OH, gy, code, relu_y, gx, 2 * W, W, gx + 2 * OH * W);
  } else {
    for (int64_t oh = 0; oh < OH; ++oh) {  // row by row: the uncovered column after each
      float* r0 = gx + 2 * oh * W;
      worst = std::max(worst, unpool_rows_2x2_code(OW, oh, oh + 1, gy, code, relu_y, gx, 2 * W, W, r0 + 2 * OW));
      r0[2 * OW] = r0[W + 2 * OW] = 0.f;
    }
  }
  if (2 * OH < H) std::memset(gx + 2 * OH * W, 0, sizeof(float) * W);
  return worst <= 3.f;
}

// Whole tensors whose 2x2 windows tile the input exactly (H == 2*OH, W == 2*OW): output rows
// r0..r1 counted over all planes (row r's input rows lie at 4*OW*r), one call per thread.
static float unpool_flat_2x2_code(int64_t OW, int64_t r0, int64_t r1, const float* gy, const uint8_t* code,
                                  const float* relu_y, float* gx) {
  return unpool_rows_2x2_code(OW, r0, r1, gy, code, relu_y, gx, 4 * OW, 2 * OW, gx + r1 * 4 * OW);
}

// The same from int64 indices: zero the plane, then store each gradient once at its index (false
// as soon as one lies outside its own window; the caller then redoes the plane generically).
// Scalar at every width: turning the indices into codes for the vector row kernel measured slower.
static bool unpool_plane_2x2(const Pool2dShape& s, const float* gy, const int64_t* idx, float* gx) {
  const int64_t H = s.H, W = s.W, OH = s.OH, OW = s.OW;
  std::memset(gx, 0, sizeof(float) * H * W);
  bool stray = false;
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {  // branch-free: a data-dependent branch mispredicts
      const int64_t corner = 2 * oh * W + 2 * ow, i = idx[oh * OW + ow];
      const uint64_t l = uint64_t(i - corner);
      const bool inside = (l < 2) | (l - uint64_t(W) < 2);
      stray |= !inside;
      gx[inside ? i : corner] = gy[oh * OW + ow];  // a stray index writes inside the plane only
    }
    if (stray) return false;
  }
  return true;
}

const PoolKernels kPool{&pool_plane_any, &pool_plane_2x2, &unpool_plane_2x2, &unpool_plane_2x2_code, &unpool_flat_2x2_code, &pool_rows_2x2,
                        FM_ISA_LEVEL == 3 ? "avx512 rows" : FM_ISA_LEVEL == 2 ? "avx2 rows"
                                          : FM_ISA_LEVEL == 1 ? "neon rows" : "generic rows"};
