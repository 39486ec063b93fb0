// Bindings for the SGEMM and conv2d kernels: argument validation, GIL release, numpy in/out.
#include <cstdint>
#include <initializer_list>
#include <string>

#include "bind_util.hpp"
#include "conv2d.hpp"
#include "gemm.hpp"

namespace {

fm::ConvImpl parse_impl(const std::string& impl) {
  if (impl == "fast") return fm::ConvImpl::fast;
  if (impl == "gemm") return fm::ConvImpl::gemm;
  if (impl == "reference") return fm::ConvImpl::reference;
  if (impl == "winograd") return fm::ConvImpl::winograd;
  if (impl == "winograd2") return fm::ConvImpl::winograd_f2;
  if (impl == "winograd4") return fm::ConvImpl::winograd_f4;
  if (impl == "direct") return fm::ConvImpl::direct;
  fm::value_error("impl must be 'fast', 'direct', 'gemm', 'reference', 'winograd', 'winograd2' or 'winograd4', got '",
                  impl, "'");
}

struct ConvArgs {
  fm::farray x, w;
  fm::ConvShape s;
};

// Validates x (N,C,H,W), weight (K,C,R,S), stride, padding; returns the shape.
ConvArgs conv_args(py::handle x_obj, py::handle w_obj, py::handle stride, py::handle padding) {
  auto x = fm::float_arg(x_obj, "x", 4, "(N, C, H, W)");
  auto w = fm::float_arg(w_obj, "weight", 4, "(K, C, R, S)");
  auto st = fm::pair_arg(stride, "stride", 1, fm::kIntMax);
  auto pd = fm::pair_arg(padding, "padding", 0, fm::kIntMax);
  for (int i = 1; i < 4; ++i)
    if (x.shape(i) < 1)
      fm::value_error("x must have non-empty C, H, W (N, C, H, W), got shape ", fm::shape_str(x));
  for (int i = 0; i < 4; ++i)
    if (w.shape(i) < 1) fm::value_error("weight must be non-empty (K, C, R, S), got shape ", fm::shape_str(w));
  if (x.shape(1) != w.shape(1))
    fm::value_error("weight in-channels (K, C, R, S) must match x channels: weight shape ", fm::shape_str(w),
                    ", x shape ", fm::shape_str(x));
  // All size arithmetic in 64 bits (every factor is below 2^31 here, so no product of two
  // overflows); the kernels index with int, so each size they form must stay below 2^31.
  const int64_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  const int64_t K = w.shape(0), R = w.shape(2), S = w.shape(3);
  for (int64_t v : {N, C, H, W, K, R, S})
    if (v > fm::kIntMax) fm::value_error("x/weight dimensions must be below 2^31, got x ", fm::shape_str(x), ", weight ", fm::shape_str(w));
  const int64_t Hp = H + 2 * int64_t(pd.first), Wp = W + 2 * int64_t(pd.second);
  if (R > Hp || S > Wp)
    fm::value_error("weight kernel (R, S) = (", R, ", ", S, ") is larger than the padded input (", Hp, ", ", Wp,
                    "): x shape ", fm::shape_str(x), ", padding (", pd.first, ", ", pd.second, ")");
  const int64_t P = (Hp - R) / st.first + 1, Q = (Wp - S) / st.second + 1;
  auto small = [](std::initializer_list<int64_t> f) {  // product of factors below 2^31?
    int64_t r = 1;
    for (int64_t v : f) {
      if (v != 0 && r > fm::kIntMax / v) return false;
      r *= v;
    }
    return true;
  };
  if (!(small({Hp}) && small({Wp}) && small({C, Hp, Wp}) && small({C, S, Hp, Q}) && small({C, R, S, P, Q}) &&
        small({K, P, Q}) && small({C, H, W}) && small({K, C, R, S}) && small({N, P, Q}) && small({N, H, W})))
    fm::value_error("conv2d: x ", fm::shape_str(x), ", weight ", fm::shape_str(w), " with padding (", pd.first, ", ",
                    pd.second, ") and stride (", st.first, ", ", st.second, ") gives an output of (", P, ", ", Q,
                    ") per plane: too large (per-image sizes must stay below 2^31 elements)");
  fm::ConvShape s{int(N), int(C), int(H), int(W), int(K), int(R), int(S), st.first, st.second, pd.first, pd.second};
  return {std::move(x), std::move(w), s};
}

}  // namespace

void bind_conv(py::module_& m) {
  // Testing hook for the SGEMM: C = A @ B with optional transposes (float32 2-D arrays).
  m.def(
      "_sgemm",
      [](py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b, bool parallel) {
        auto A = fm::float_arg(a_obj, "a", 2, "(M, K)");
        auto B = fm::float_arg(b_obj, "b", 2, "(K, N)");
        int M = int(trans_a ? A.shape(1) : A.shape(0)), K = int(trans_a ? A.shape(0) : A.shape(1));
        int K2 = int(trans_b ? B.shape(1) : B.shape(0)), N = int(trans_b ? B.shape(0) : B.shape(1));
        for (int i = 0; i < 2; ++i)
          if (A.shape(i) > fm::kIntMax || B.shape(i) > fm::kIntMax) fm::value_error("_sgemm: dimensions must be below 2^31");
        if (K != K2) fm::value_error("_sgemm: inner dimensions differ: ", K, " vs ", K2);
        auto C = fm::new_farray({M, N});
        {
          fm::nogil nogil;
          auto f = parallel ? fm::sgemm_parallel : fm::sgemm;
          f(trans_a, trans_b, M, N, K, 1.f, A.data(), int(A.shape(1)), B.data(), int(B.shape(1)), 0.f,
            C.mutable_data(), N);
        }
        return C;
      },
      py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("parallel") = true);

  m.def("gemm_isa", []() { return std::string(fm::gemm_isa_name()); },
        "Instruction set of the SGEMM/conv kernels chosen at run time: 'avx512', 'avx2' or 'generic'.");
  m.def(
      "_set_gemm_isa",
      [](const std::string& name) {
        std::string prev = fm::gemm_isa_name();
        if (!fm::gemm_set_isa(name.c_str()))
          fm::value_error("isa '", name, "' is unknown or not supported by this CPU (current: ", prev, ")");
        return prev;
      },
      py::arg("name"), "Testing hook: force the kernel ISA ('generic', 'avx2', 'avx512'); returns the previous one.");

  m.def(
      "conv2d_forward",
      [](py::handle x_obj, py::handle w_obj, py::object b_obj, py::handle stride, py::handle padding, bool relu,
         const std::string& impl) {
        auto a = conv_args(x_obj, w_obj, stride, padding);
        auto im = parse_impl(impl);
        fm::farray b;
        const float* bp = nullptr;
        if (!b_obj.is_none()) {
          b = fm::float_arg(b_obj, "bias", 1, "(K,)");
          if (b.shape(0) != a.s.K)
            fm::value_error("bias must have shape (K,) = (", a.s.K, ",) for weight shape ", fm::shape_str(a.w),
                            ", got ", fm::shape_str(b));
          bp = b.data();
        }
        auto y = fm::new_farray({a.s.N, a.s.K, a.s.P(), a.s.Q()});
        {
          fm::nogil nogil;
          fm::conv2d_forward(a.s, a.x.data(), a.w.data(), bp, y.mutable_data(), relu, im);
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = 1,
      py::arg("padding") = 0, py::arg("relu") = false, py::arg("impl") = "fast");

  m.def(
      "conv2d_backward",
      [](py::handle dy_obj, py::handle x_obj, py::handle w_obj, py::handle stride, py::handle padding, bool bias,
         bool input_grad, const std::string& impl, bool weight_grad) {
        auto a = conv_args(x_obj, w_obj, stride, padding);
        auto im = parse_impl(impl);
        auto dy = fm::float_arg(dy_obj, "grad_y", 4, "(N, K, P, Q)");
        const fm::ConvShape& s = a.s;
        if (dy.shape(0) != s.N || dy.shape(1) != s.K || dy.shape(2) != s.P() || dy.shape(3) != s.Q())
          fm::value_error("grad_y must have the forward output shape (N, K, P, Q) = (", s.N, ", ", s.K, ", ", s.P(),
                          ", ", s.Q(), ") for x ", fm::shape_str(a.x), " and weight ", fm::shape_str(a.w),
                          ", got ", fm::shape_str(dy));
        if (!weight_grad) bias = false;
        py::object dx_out = py::none(), db_out = py::none(), dw_out = py::none();
        fm::farray dx, db, dw;
        if (weight_grad) dw = fm::new_farray({s.K, s.C, s.R, s.S});
        if (input_grad) dx = fm::new_farray({s.N, s.C, s.H, s.W});
        if (bias) db = fm::new_farray({s.K});
        {
          fm::nogil nogil;
          if (input_grad) fm::conv2d_backward_input(s, dy.data(), a.w.data(), dx.mutable_data(), im);
          if (weight_grad)
            fm::conv2d_backward_weight(s, dy.data(), a.x.data(), dw.mutable_data(),
                                       bias ? db.mutable_data() : nullptr, im);
        }
        if (input_grad) dx_out = dx;
        if (bias) db_out = db;
        if (weight_grad) dw_out = dw;
        return py::make_tuple(dx_out, dw_out, db_out);
      },
      py::arg("grad_y"), py::arg("x"), py::arg("weight"), py::arg("stride") = 1, py::arg("padding") = 0,
      py::arg("bias") = true, py::arg("input_grad") = true, py::arg("impl") = "fast",
      py::arg("weight_grad") = true);
}
