// Logistic-regression row kernels, written once against the SIMD traits `S` and compiled per ISA
// by simd/instantiate.hpp (logreg.cpp: the epoch driver).
//   dots: z[c] += sum_d W[c,d] x[d]        (x read once, up to 10 class accumulators in registers)
//   ger:  G[c,d] += sum_r g[r,c] x_r[d]    (up to 4 rows at a time, so G is read/written once per 4)

#if FM_ISA_LEVEL == 0
// one lane: plain loops the compiler vectorises (omp simd allows the reordered reduction)
static void lr_dots(const float* x, const float* W, int ld, int L, int C, float* z) {
  for (int c = 0; c < C; ++c) {
    const float* w = W + (size_t)c * ld;
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int d = 0; d < L; ++d) acc += w[d] * x[d];
    z[c] += acc;
  }
}

static void lr_ger(const float* const* rows, const float* g, int R, int L, int C, float* G, int ld) {
  for (int c = 0; c < C; ++c) {
    float* Gc = G + (size_t)c * ld;
    for (int r = 0; r < R; ++r) {
      const float gr = g[r * C + c];
      const float* x = rows[r];
#pragma omp simd
      for (int d = 0; d < L; ++d) Gc[d] += gr * x[d];
    }
  }
}
#else
// x (D,), W rows c0..c0+NG-1 (row stride ld) -> z[0..NG) +=
template <int NG>
static void lr_dots_group(const float* x, const float* W, int ld, int D, float* z) {
  using V = typename S::V;
  V acc[NG];
  for (int g = 0; g < NG; ++g) acc[g] = S::zero();
  int d = 0;
  for (; d + S::W <= D; d += S::W) {
    const V xv = S::load(x + d);
    for (int g = 0; g < NG; ++g) acc[g] = S::fma(S::load(W + (size_t)g * ld + d), xv, acc[g]);
  }
  if (d < D) {
    const V xv = S::load_n(x + d, D - d);
    for (int g = 0; g < NG; ++g) acc[g] = S::fma(S::load_n(W + (size_t)g * ld + d, D - d), xv, acc[g]);
  }
  for (int g = 0; g < NG; ++g) z[g] += S::reduce_add(acc[g]);
}

static void lr_dots(const float* x, const float* W, int ld, int D, int C, float* z) {
  int c = 0;
  while (c < C) {
    const float* w = W + (size_t)c * ld;
    switch (std::min(C - c, 10)) {
      case 10: lr_dots_group<10>(x, w, ld, D, z + c); c += 10; break;
      case 9: lr_dots_group<9>(x, w, ld, D, z + c); c += 9; break;
      case 8: lr_dots_group<8>(x, w, ld, D, z + c); c += 8; break;
      case 7: lr_dots_group<7>(x, w, ld, D, z + c); c += 7; break;
      case 6: lr_dots_group<6>(x, w, ld, D, z + c); c += 6; break;
      case 5: lr_dots_group<5>(x, w, ld, D, z + c); c += 5; break;
      case 4: lr_dots_group<4>(x, w, ld, D, z + c); c += 4; break;
      case 3: lr_dots_group<3>(x, w, ld, D, z + c); c += 3; break;
      case 2: lr_dots_group<2>(x, w, ld, D, z + c); c += 2; break;
      default: lr_dots_group<1>(x, w, ld, D, z + c); c += 1; break;
    }
  }
}

template <int R>
static void lr_ger_rows(const float* const* rows, const float* g, int D, int C, float* G, int ld) {
  using V = typename S::V;
  for (int c = 0; c < C; ++c) {
    float* Gc = G + (size_t)c * ld;
    V gv[R];
    for (int r = 0; r < R; ++r) gv[r] = S::set1(g[r * C + c]);
    int d = 0;
    for (; d + S::W <= D; d += S::W) {
      V a = S::load(Gc + d);
      for (int r = 0; r < R; ++r) a = S::fma(gv[r], S::load(rows[r] + d), a);
      S::store(Gc + d, a);
    }
    if (d < D) {
      const int n = D - d;
      V a = S::load_n(Gc + d, n);
      for (int r = 0; r < R; ++r) a = S::fma(gv[r], S::load_n(rows[r] + d, n), a);
      S::store_n(Gc + d, a, n);
    }
  }
}

static void lr_ger(const float* const* rows, const float* g, int R, int D, int C, float* G, int ld) {
  switch (R) {
    case 4: lr_ger_rows<4>(rows, g, D, C, G, ld); break;
    case 3: lr_ger_rows<3>(rows, g, D, C, G, ld); break;
    case 2: lr_ger_rows<2>(rows, g, D, C, G, ld); break;
    default:
      for (int r = 0; r < R; ++r) lr_ger_rows<1>(rows + r, g + (size_t)r * C, D, C, G, ld);
  }
}
#endif

const LogregKernels kLogreg{&lr_dots, &lr_ger, S::name};
