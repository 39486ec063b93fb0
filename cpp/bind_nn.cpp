// Bindings for pooling, activations, linear and losses: validation (ValueError/TypeError naming
// the argument and shapes), GIL release around each kernel, numpy in/out.
#include <string>
#include <vector>

#include "activation.hpp"
#include "bind_util.hpp"
#include "linear.hpp"
#include "loss.hpp"
#include "pool.hpp"

namespace {

using fm::farray;
using fm::larray;

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

void same_shape(const py::array& a, const char* an, const py::array& b, const char* bn, const char* fn) {
  if (shape_of(a) != shape_of(b))
    fm::value_error(fn, ": ", an, " and ", bn, " must have the same shape, got ", fm::shape_str(a), " and ",
                    fm::shape_str(b));
}

// ---- pooling --------------------------------------------------------------------------------

// Kernel geometry (int or pair arguments, as torch) for an input (N, C, H, W); validates and
// computes the output size. `shape_desc` names the input in messages.
fm::Pool2dShape pool_geometry(const char* fn, int64_t N, int64_t C, int64_t H, int64_t W, const std::string& shape_desc,
                              py::handle k_obj, py::handle s_obj, py::handle p_obj) {
  auto [KH, KW] = fm::pair_arg(k_obj, "kernel_size");
  auto [SH, SW] = s_obj.is_none() ? std::pair<int, int>{KH, KW} : fm::pair_arg(s_obj, "stride");
  auto [PH, PW] = fm::pair_arg(p_obj, "padding");
  if (KH <= 0 || KW <= 0) fm::value_error(fn, ": kernel_size must be positive, got (", KH, ", ", KW, ")");
  if (SH <= 0 || SW <= 0) fm::value_error(fn, ": stride must be positive, got (", SH, ", ", SW, ")");
  if (PH < 0 || PW < 0) fm::value_error(fn, ": padding must be non-negative, got (", PH, ", ", PW, ")");
  if (PH > KH / 2 || PW > KW / 2)
    fm::value_error(fn, ": padding (", PH, ", ", PW, ") must be at most half of kernel_size (", KH, ", ", KW, ")");
  // as PyTorch: an empty batch is fine (empty output), empty channels or planes are not
  if (C < 1 || H < 1 || W < 1)
    fm::value_error(fn, ": x must have non-empty channel and spatial dimensions, got shape ", shape_desc);
  if (H + 2 * int64_t(PH) < KH || W + 2 * int64_t(PW) < KW)
    fm::value_error(fn, ": kernel_size (", KH, ", ", KW, ") with padding (", PH, ", ", PW,
                    ") is larger than the input of shape ", shape_desc);
  fm::Pool2dShape s{};
  s.N = N, s.C = C, s.H = H, s.W = W;
  s.KH = KH, s.KW = KW, s.SH = SH, s.SW = SW, s.PH = PH, s.PW = PW;
  s.OH = (H + 2 * int64_t(PH) - KH) / SH + 1;
  s.OW = (W + 2 * int64_t(PW) - KW) / SW + 1;
  return s;
}

// mode 0: values only, 1: int64 torch indices, 2: compact uint8 window offsets
py::object max_pool2d_impl(const char* fn, py::handle x_obj, py::handle k_obj, py::handle s_obj, py::handle p_obj,
                           int mode) {
  const bool is_arr = py::isinstance<py::array>(x_obj);
  const int nd = is_arr ? int(py::reinterpret_borrow<py::array>(x_obj).ndim()) : -1;
  if (is_arr && nd != 3 && nd != 4)
    fm::value_error(fn, ": x must have 4 dimensions (N, C, H, W) or 3 (C, H, W), got shape ",
                    fm::shape_str(py::reinterpret_borrow<py::array>(x_obj)));
  farray x = fm::float_arg(x_obj, "x", nd == 3 ? 3 : 4, "(N, C, H, W)");
  const int off = nd == 3 ? 1 : 0;
  fm::Pool2dShape s = pool_geometry(fn, nd == 3 ? 1 : x.shape(0), x.shape(1 - off), x.shape(2 - off),
                                    x.shape(3 - off), fm::shape_str(x), k_obj, s_obj, p_obj);
  if (mode == 2 && int64_t(s.KH) * s.KW > 256)
    fm::value_error(fn, ": compact indices need kernel_size area <= 256, got (", s.KH, ", ", s.KW, ")");
  std::vector<py::ssize_t> oshape = {s.N, s.C, s.OH, s.OW};
  if (nd == 3) oshape.erase(oshape.begin());
  farray y = fm::new_farray(oshape);
  larray idx = mode == 1 ? fm::new_array<int64_t>(oshape) : larray();
  using u8array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
  u8array code = mode == 2 ? fm::new_array<uint8_t>(oshape) : u8array();
  {
    fm::nogil nogil;
    fm::max_pool2d_forward(s, x.data(), y.mutable_data(), mode == 1 ? idx.mutable_data() : nullptr,
                           mode == 2 ? code.mutable_data() : nullptr);
  }
  if (mode == 1) return py::make_tuple(y, idx);
  if (mode == 2) return py::make_tuple(y, code);
  return std::move(y);
}

py::object max_pool2d(py::handle x_obj, py::handle k_obj, py::handle s_obj, py::handle p_obj, bool return_indices) {
  return max_pool2d_impl("max_pool2d", x_obj, k_obj, s_obj, p_obj, return_indices ? 1 : 0);
}

std::vector<int64_t> shape_arg(py::handle shape_obj, const char* fn) {
  std::vector<int64_t> ishape;
  // a sequence of 3 or 4 items, checked before iterating (a huge array must not be walked)
  const Py_ssize_t len = PySequence_Check(shape_obj.ptr()) ? PySequence_Size(shape_obj.ptr()) : -1;
  if (len < 0) {
    PyErr_Clear();
    fm::type_error(fn, ": input_shape must be a tuple of ints, got ", std::string(py::repr(shape_obj)));
  }
  if (len != 3 && len != 4)
    fm::value_error(fn, ": input_shape must be (N, C, H, W) or (C, H, W), got a sequence of length ", len);
  try {
    for (auto v : py::reinterpret_borrow<py::iterable>(shape_obj)) ishape.push_back(py::reinterpret_borrow<py::object>(v).cast<int64_t>());
  } catch (py::error_already_set&) {
    fm::type_error(fn, ": input_shape must be a tuple of ints, got ", std::string(py::repr(shape_obj)));
  } catch (py::cast_error&) {
    fm::type_error(fn, ": input_shape must be a tuple of ints, got ", std::string(py::repr(shape_obj)));
  }
  if (ishape.size() != 4 && ishape.size() != 3)
    fm::value_error(fn, ": input_shape must be (N, C, H, W) or (C, H, W), got ", shape_str(ishape));
  for (int64_t v : ishape)
    if (v < 0) fm::value_error(fn, ": input_shape must be non-negative, got ", shape_str(ishape));
  return ishape;
}

farray max_pool2d_compact_backward(py::handle gy_obj, py::handle code_obj, py::handle shape_obj, py::handle k_obj,
                                   py::handle s_obj, py::handle p_obj, py::handle relu_obj) {
  const char* fn = "max_pool2d_compact_backward";
  std::vector<int64_t> ishape = shape_arg(shape_obj, fn);
  const int nd = int(ishape.size()), off = nd == 3 ? 1 : 0;
  fm::Pool2dShape s = pool_geometry(fn, nd == 3 ? 1 : ishape[0], ishape[1 - off], ishape[2 - off], ishape[3 - off],
                                    shape_str(ishape), k_obj, s_obj, p_obj);
  if (int64_t(s.KH) * s.KW > 256)
    fm::value_error(fn, ": compact indices need kernel_size area <= 256, got (", s.KH, ", ", s.KW, ")");
  std::vector<int64_t> oshape = {s.N, s.C, s.OH, s.OW};
  if (nd == 3) oshape.erase(oshape.begin());
  farray gy = fm::float_arg(gy_obj, "grad_y", nd, nd == 4 ? "(N, C, OH, OW)" : "(C, OH, OW)");
  if (!py::isinstance<py::array>(code_obj) || !py::reinterpret_borrow<py::array>(code_obj).dtype().is(py::dtype::of<uint8_t>()))
    fm::type_error(fn, ": argmax must be the uint8 array from max_pool2d_compact, got ",
                   py::isinstance<py::array>(code_obj) ? "dtype " + std::string(py::str(py::reinterpret_borrow<py::array>(code_obj).dtype()))
                                                       : std::string(py::str(py::type::of(code_obj).attr("__name__"))));
  auto code = fm::carray<uint8_t>(code_obj);
  if (shape_of(gy) != std::vector<py::ssize_t>(oshape.begin(), oshape.end()) || shape_of(code) != shape_of(gy))
    fm::value_error(fn, ": grad_y and argmax must have shape ", shape_str(oshape), " for input_shape ", shape_str(ishape),
                    " and this kernel_size/stride/padding, got ", fm::shape_str(gy), " and ", fm::shape_str(code));
  farray relu_y;
  if (!relu_obj.is_none()) {
    relu_y = fm::float_arg(relu_obj, "relu_y", nd, nd == 4 ? "(N, C, OH, OW)" : "(C, OH, OW)");
    same_shape(gy, "grad_y", relu_y, "relu_y", fn);
  }
  farray gx = fm::new_farray(std::vector<py::ssize_t>(ishape.begin(), ishape.end()));
  bool ok;
  {
    fm::nogil nogil;
    ok = fm::max_pool2d_backward_compact(s, gy.data(), code.data(), gx.mutable_data(),
                                         relu_obj.is_none() ? nullptr : relu_y.data());
  }
  if (!ok)
    fm::value_error(fn, ": argmax holds a window offset outside the kernel_size (", s.KH, ", ", s.KW,
                    ") window or inside the padding");
  return gx;
}

farray max_pool2d_backward(py::handle gy_obj, py::handle idx_obj, py::handle shape_obj) {
  std::vector<int64_t> ishape = shape_arg(shape_obj, "max_pool2d_backward");
  const int nd = int(ishape.size());
  farray gy = fm::float_arg(gy_obj, "grad_y", nd, nd == 4 ? "(N, C, OH, OW)" : "(C, OH, OW)");
  larray idx = fm::int_arg(idx_obj, "indices", nd, nd == 4 ? "(N, C, OH, OW)" : "(C, OH, OW)");
  same_shape(gy, "grad_y", idx, "indices", "max_pool2d_backward");
  const int off = nd == 3 ? 1 : 0;
  fm::Pool2dShape s{};
  s.N = nd == 3 ? 1 : ishape[0];
  s.C = ishape[1 - off], s.H = ishape[2 - off], s.W = ishape[3 - off];
  s.OH = gy.shape(2 - off), s.OW = gy.shape(3 - off);
  if ((nd == 4 && gy.shape(0) != s.N) || gy.shape(1 - off) != s.C)
    fm::value_error("max_pool2d_backward: grad_y of shape ", fm::shape_str(gy), " does not match input_shape ",
                    shape_str(ishape), " in batch/channels");
  farray gx = fm::new_farray(std::vector<py::ssize_t>(ishape.begin(), ishape.end()));
  bool ok;
  {
    fm::nogil nogil;
    ok = fm::max_pool2d_backward(s, gy.data(), idx.data(), gx.mutable_data());
  }
  if (!ok)
    fm::value_error("max_pool2d_backward: indices must lie in [0, H*W) = [0, ", s.H * s.W, ") for input_shape ",
                    shape_str(ishape));
  return gx;
}

// ---- activations ----------------------------------------------------------------------------

template <void (*F)(int64_t, const float*, float*)>
farray unary(py::handle x_obj) {
  farray x = fm::float_arg(x_obj, "x", -1, "(any shape)");
  farray y = fm::new_farray(shape_of(x));
  {
    fm::nogil nogil;
    F(x.size(), x.data(), y.mutable_data());
  }
  return y;
}

template <void (*F)(int64_t, const float*, const float*, float*)>
farray binary_grad(py::handle gy_obj, py::handle a_obj, const char* an, const char* fn) {
  farray gy = fm::float_arg(gy_obj, "grad_y", -1, "(any shape)");
  farray a = fm::float_arg(a_obj, an, -1, "(same shape as grad_y)");
  same_shape(gy, "grad_y", a, an, fn);
  farray gx = fm::new_farray(shape_of(gy));
  {
    fm::nogil nogil;
    F(gy.size(), gy.data(), a.data(), gx.mutable_data());
  }
  return gx;
}

// ---- linear ---------------------------------------------------------------------------------

struct LinearArgs {
  farray x, w, b;
  bool has_b = false;
  int64_t N, in, out;
};

LinearArgs linear_args(py::handle x_obj, py::handle w_obj, py::handle b_obj, const char* fn) {
  LinearArgs a;
  a.x = fm::float_arg(x_obj, "x", 2, "(N, in_features)");
  a.w = fm::float_arg(w_obj, "weight", 2, "(out_features, in_features)");
  a.N = a.x.shape(0), a.in = a.x.shape(1), a.out = a.w.shape(0);
  if (a.N > fm::kIntMax || a.in > fm::kIntMax || a.out > fm::kIntMax)  // the SGEMM takes int sizes
    fm::value_error(fn, ": dimensions must be below 2^31, got x ", fm::shape_str(a.x), " and weight ", fm::shape_str(a.w));
  if (a.w.shape(1) != a.in)
    fm::value_error(fn, ": x of shape ", fm::shape_str(a.x), " and weight of shape ", fm::shape_str(a.w),
                    " disagree on in_features (weight is (out_features, in_features) as in PyTorch)");
  if (!b_obj.is_none()) {
    a.b = fm::float_arg(b_obj, "bias", 1, "(out_features,)");
    a.has_b = true;
    if (a.b.shape(0) != a.out)
      fm::value_error(fn, ": bias must have shape (", a.out, ",) for weight of shape ", fm::shape_str(a.w),
                      ", got ", fm::shape_str(a.b));
  }
  return a;
}

farray linear(py::handle x_obj, py::handle w_obj, py::handle b_obj, bool relu) {
  LinearArgs a = linear_args(x_obj, w_obj, b_obj, relu ? "linear_relu" : "linear");
  farray y = fm::new_farray({a.N, a.out});
  {
    fm::nogil nogil;
    fm::linear_forward(a.N, a.in, a.out, a.x.data(), a.w.data(), a.has_b ? a.b.data() : nullptr,
                       y.mutable_data(), relu);
  }
  return y;
}

py::tuple linear_backward(py::handle gy_obj, py::handle x_obj, py::handle w_obj, bool bias, bool input_grad) {
  LinearArgs a = linear_args(x_obj, w_obj, py::none(), "linear_backward");
  farray gy = fm::float_arg(gy_obj, "grad_y", 2, "(N, out_features)");
  if (gy.shape(0) != a.N || gy.shape(1) != a.out)
    fm::value_error("linear_backward: grad_y must have shape (", a.N, ", ", a.out, ") for x of shape ",
                    fm::shape_str(a.x), " and weight of shape ", fm::shape_str(a.w), ", got ", fm::shape_str(gy));
  farray gw = fm::new_farray({a.out, a.in});
  farray gx = input_grad ? fm::new_farray({a.N, a.in}) : farray();
  farray gb = bias ? fm::new_farray({a.out}) : farray();
  {
    fm::nogil nogil;
    fm::linear_backward(a.N, a.in, a.out, gy.data(), a.x.data(), a.w.data(), input_grad ? gx.mutable_data() : nullptr,
                        gw.mutable_data(), bias ? gb.mutable_data() : nullptr);
  }
  return py::make_tuple(input_grad ? py::object(gx) : py::object(py::none()), gw,
                        bias ? py::object(gb) : py::object(py::none()));
}

// ---- softmax and losses ---------------------------------------------------------------------

template <void (*F)(int64_t, int64_t, const float*, float*)>
farray rowwise(py::handle x_obj) {
  farray x = fm::float_arg(x_obj, "x", 2, "(N, C)");
  farray y = fm::new_farray(shape_of(x));
  {
    fm::nogil nogil;
    F(x.shape(0), x.shape(1), x.data(), y.mutable_data());
  }
  return y;
}

template <void (*F)(int64_t, int64_t, const float*, const float*, float*)>
farray rowwise_grad(py::handle gy_obj, py::handle y_obj, const char* fn) {
  farray gy = fm::float_arg(gy_obj, "grad_y", 2, "(N, C)");
  farray y = fm::float_arg(y_obj, "y", 2, "(N, C)");
  same_shape(gy, "grad_y", y, "y", fn);
  farray gx = fm::new_farray(shape_of(gy));
  {
    fm::nogil nogil;
    F(gy.shape(0), gy.shape(1), gy.data(), y.data(), gx.mutable_data());
  }
  return gx;
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj, bool want_grad) {
  farray x = fm::float_arg(logits_obj, "logits", 2, "(N, C)");
  larray t = fm::int_arg(labels_obj, "labels", 1, "(N,)");
  const int64_t N = x.shape(0), C = x.shape(1);
  if (t.shape(0) != N)
    fm::value_error("softmax_cross_entropy: labels must have shape (", N, ",) for logits of shape ", fm::shape_str(x),
                    ", got ", fm::shape_str(t));
  if (N == 0 || C == 0)
    fm::value_error("softmax_cross_entropy: logits must have at least one row and one class, got shape ",
                    fm::shape_str(x));
  const int64_t* tp = t.data();
  for (int64_t n = 0; n < N; ++n)
    if (tp[n] < 0 || tp[n] >= C)
      fm::value_error("softmax_cross_entropy: labels[", n, "] = ", tp[n], " is outside [0, ", C,
                      ") for logits of shape ", fm::shape_str(x));
  farray g = want_grad ? fm::new_farray(shape_of(x)) : farray();
  double loss;
  {
    fm::nogil nogil;
    loss = fm::softmax_cross_entropy(N, C, x.data(), tp, want_grad ? g.mutable_data() : nullptr);
  }
  return py::make_tuple(loss, want_grad ? py::object(g) : py::object(py::none()));
}

py::tuple mse_loss(py::handle p_obj, py::handle t_obj, bool want_grad) {
  farray p = fm::float_arg(p_obj, "pred", -1, "(any shape)");
  farray t = fm::float_arg(t_obj, "target", -1, "(same shape as pred)");
  same_shape(p, "pred", t, "target", "mse_loss");
  if (p.size() == 0) fm::value_error("mse_loss: pred is empty, shape ", fm::shape_str(p));
  farray g = want_grad ? fm::new_farray(shape_of(p)) : farray();
  double loss;
  {
    fm::nogil nogil;
    loss = fm::mse_loss(p.size(), p.data(), t.data(), want_grad ? g.mutable_data() : nullptr);
  }
  return py::make_tuple(loss, want_grad ? py::object(g) : py::object(py::none()));
}

}  // namespace

void bind_nn(py::module_& m) {
  m.def("max_pool2d", &max_pool2d, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("return_indices") = false);
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_y"), py::arg("indices"), py::arg("input_shape"));
  m.def(
      "max_pool2d_compact",
      [](py::handle x, py::handle k, py::handle s, py::handle p) { return max_pool2d_impl("max_pool2d_compact", x, k, s, p, 2); },
      py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0);
  m.def("max_pool2d_compact_backward", &max_pool2d_compact_backward, py::arg("grad_y"), py::arg("argmax"),
        py::arg("input_shape"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
        py::kw_only(), py::arg("relu_y") = py::none());

  m.def("relu", &unary<fm::relu_forward>, py::arg("x"));
  m.def("sigmoid", &unary<fm::sigmoid_forward>, py::arg("x"));
  m.def(
      "relu_backward", [](py::handle gy, py::handle x) { return binary_grad<fm::relu_backward>(gy, x, "x", "relu_backward"); },
      py::arg("grad_y"), py::arg("x"));
  m.def(
      "sigmoid_backward",
      [](py::handle gy, py::handle y) { return binary_grad<fm::sigmoid_backward>(gy, y, "y", "sigmoid_backward"); },
      py::arg("grad_y"), py::arg("y"));

  m.def("linear", &linear, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("relu") = false);
  m.def("linear_backward", &linear_backward, py::arg("grad_y"), py::arg("x"), py::arg("weight"),
        py::arg("bias") = true, py::arg("input_grad") = true);

  m.def("softmax", &rowwise<fm::softmax_forward>, py::arg("x"));
  m.def("log_softmax", &rowwise<fm::log_softmax_forward>, py::arg("x"));
  m.def(
      "softmax_backward",
      [](py::handle gy, py::handle y) { return rowwise_grad<fm::softmax_backward>(gy, y, "softmax_backward"); },
      py::arg("grad_y"), py::arg("y"));
  m.def(
      "log_softmax_backward",
      [](py::handle gy, py::handle y) { return rowwise_grad<fm::log_softmax_backward>(gy, y, "log_softmax_backward"); },
      py::arg("grad_y"), py::arg("y"));
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"), py::arg("grad") = true);
  m.def("mse_loss", &mse_loss, py::arg("pred"), py::arg("target"), py::arg("grad") = true);

  // Testing hooks: switch the AVX-512 paths off/on; plain-loop references.
  m.def("_pool_set_simd", &fm::pool_set_simd, py::arg("enabled"));
  m.def("_pool_stream_fallbacks", &fm::pool_stream_fallbacks);
  m.def(
      "_max_pool2d_reference",
      [](py::handle x_obj, int KH, int KW, int SH, int SW, int PH, int PW) {
        farray x = fm::float_arg(x_obj, "x", 4, "(N, C, H, W)");
        fm::Pool2dShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), KH, KW, SH, SW, PH, PW, 0, 0};
        if (KH <= 0 || KW <= 0 || SH <= 0 || SW <= 0 || PH < 0 || PW < 0 || s.C < 1 || s.H < 1 || s.W < 1 ||
            s.H + 2 * int64_t(PH) < KH || s.W + 2 * int64_t(PW) < KW)
          fm::value_error("_max_pool2d_reference: bad geometry");
        s.OH = (s.H + 2 * int64_t(PH) - KH) / SH + 1;
        s.OW = (s.W + 2 * int64_t(PW) - KW) / SW + 1;
        farray y({s.N, s.C, s.OH, s.OW});
        larray idx({s.N, s.C, s.OH, s.OW});
        {
          fm::nogil nogil;
          fm::max_pool2d_forward_reference(s, x.data(), y.mutable_data(), idx.mutable_data());
        }
        return py::make_tuple(y, idx);
      },
      py::arg("x"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"), py::arg("pw"));
  m.def(
      "_linear_reference",
      [](py::handle x_obj, py::handle w_obj, py::handle b_obj) {
        LinearArgs a = linear_args(x_obj, w_obj, b_obj, "_linear_reference");
        farray y({a.N, a.out});
        {
          fm::nogil nogil;
          fm::linear_forward_reference(a.N, a.in, a.out, a.x.data(), a.w.data(), a.has_b ? a.b.data() : nullptr,
                                       y.mutable_data());
        }
        return y;
      },
      py::arg("x"), py::arg("weight"), py::arg("bias") = py::none());
}
