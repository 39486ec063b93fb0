// Bindings for the training helpers: optimizer update steps (in place) and augmentation warps.
#include <memory>
#include <string>
#include <vector>

#include "augment.hpp"
#include "bind_util.hpp"
#include "optim.hpp"

namespace {

using fm::farray;

// A float32 array updated in place: it must already be float32, C-contiguous and writable (a
// converted copy would silently drop the update).
py::array inplace_arg(py::handle obj, const char* name) {
  if (!py::isinstance<py::array>(obj))
    fm::type_error(name, " must be a numpy float32 array (updated in place), got ",
                   std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<float>()))
    fm::type_error(name, " must be float32 (updated in place), got dtype ", std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    fm::value_error(name, " must be C-contiguous (updated in place), got a non-contiguous array of shape ",
                    fm::shape_str(a));
  if (!a.writeable()) fm::value_error(name, " must be writable (updated in place)");
  return a;
}

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) != b.shape(i)) return false;
  return true;
}

void check_same(const py::array& p, const char* pname, const py::array& b, const char* bname) {
  if (!same_shape(p, b))
    fm::value_error(bname, " must have the shape of ", pname, " ", fm::shape_str(p), ", got ", fm::shape_str(b));
}

// A real number argument (float, int, numpy scalar); TypeError naming it otherwise.
float float_value(py::handle obj, const char* name) {
  double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    fm::type_error(name, " must be a real number, got ", std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  return float(v);
}

void check_finite_scalar(double v, const char* name) {
  if (!std::isfinite(v)) fm::value_error(name, " must be finite, got ", v);
}

// The gradient: float32 (converted copies allowed: it is only read), the parameter's shape.
farray grad_arg(py::handle obj, const py::array& p) {
  farray g = fm::float_arg(obj, "grad", -1, "(same shape as param)");
  check_same(p, "param", g, "grad");
  return g;
}

void sgd_step_py(py::handle param, py::handle grad, py::object momentum_buffer, double lr, double momentum,
                 double dampening, double weight_decay, bool nesterov, bool first, bool reference) {
  py::array p = inplace_arg(param, "param");
  farray g = grad_arg(grad, p);
  check_finite_scalar(lr, "lr");
  check_finite_scalar(momentum, "momentum");
  check_finite_scalar(dampening, "dampening");
  check_finite_scalar(weight_decay, "weight_decay");
  float* buf = nullptr;
  std::unique_ptr<fm::InplaceF32> b;
  if (momentum != 0.0) {
    if (momentum_buffer.is_none()) fm::value_error("momentum_buffer is required when momentum != 0");
    py::array ba = inplace_arg(momentum_buffer, "momentum_buffer");
    check_same(p, "param", ba, "momentum_buffer");
    b = std::make_unique<fm::InplaceF32>(ba);
    buf = b->data();
  }
  if (nesterov && (momentum <= 0.0 || dampening != 0.0))
    fm::value_error("nesterov momentum requires momentum > 0 and dampening == 0");
  fm::InplaceF32 pw(p);
  float* pp = pw.data();
  const float* gp = g.data();
  int64_t n = p.size();
  {
    fm::nogil nogil;
    (reference ? fm::sgd_step_reference : fm::sgd_step)(pp, gp, buf, n, float(lr), float(momentum), float(dampening),
                                                        float(weight_decay), nesterov, first);
  }
  pw.commit();
  if (b) b->commit();
}

void adam_step_py(py::handle param, py::handle grad, py::handle exp_avg, py::handle exp_avg_sq, py::handle step_obj,
                  double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
                  bool reference) {
  py::array p = inplace_arg(param, "param");
  farray g = grad_arg(grad, p);
  py::array m = inplace_arg(exp_avg, "exp_avg");
  py::array v = inplace_arg(exp_avg_sq, "exp_avg_sq");
  check_same(p, "param", m, "exp_avg");
  check_same(p, "param", v, "exp_avg_sq");
  const int64_t step = fm::int_value(step_obj, "step", 1, INT64_MAX);
  check_finite_scalar(lr, "lr");
  check_finite_scalar(eps, "eps");
  check_finite_scalar(weight_decay, "weight_decay");
  if (!(beta1 >= 0.0 && beta1 < 1.0)) fm::value_error("beta1 must be in [0, 1), got ", beta1);
  if (!(beta2 >= 0.0 && beta2 < 1.0)) fm::value_error("beta2 must be in [0, 1), got ", beta2);
  fm::InplaceF32 pw(p), mw(m), vw(v);
  float* pp = pw.data();
  float* mp = mw.data();
  float* vp = vw.data();
  const float* gp = g.data();
  int64_t n = p.size();
  {
    fm::nogil nogil;
    (reference ? fm::adam_step_reference : fm::adam_step)(pp, gp, mp, vp, n, lr, beta1, beta2, eps, weight_decay,
                                                          step, decoupled);
  }
  pw.commit();
  mw.commit();
  vw.commit();
}

// x (N,C,H,W) or (N,H,W); mats (N,2,3) affine or (N,3,3) homography -> same shape as x
farray warp_py(py::handle x_obj, py::handle mats_obj, bool reference) {
  if (!py::isinstance<py::array>(x_obj))
    fm::type_error("x must be a numpy float32 array (N, C, H, W) or (N, H, W), got ",
                   std::string(py::str(py::type::of(x_obj).attr("__name__"))));
  py::array xa = py::reinterpret_borrow<py::array>(x_obj);
  if (xa.ndim() != 3 && xa.ndim() != 4)
    fm::value_error("x must have shape (N, C, H, W) or (N, H, W), got shape ", fm::shape_str(xa));
  farray x = fm::float_arg(x_obj, "x", int(xa.ndim()), "(N, C, H, W) or (N, H, W)");
  if (!py::isinstance<py::array>(mats_obj))
    fm::type_error("mats must be a numpy array (N, 2, 3) or (N, 3, 3)");
  py::array ma = py::reinterpret_borrow<py::array>(mats_obj);
  char k = ma.dtype().kind();
  if (k != 'f' && k != 'i' && k != 'u') fm::type_error("mats must be a real array, got dtype ", std::string(py::str(ma.dtype())));
  auto mats = fm::carray<double>(ma);
  const int64_t N = x.shape(0);
  const int64_t C = x.ndim() == 4 ? x.shape(1) : 1;
  const int64_t H = x.shape(x.ndim() - 2), W = x.shape(x.ndim() - 1);
  if (mats.ndim() != 3 || mats.shape(0) != N || mats.shape(2) != 3 || (mats.shape(1) != 2 && mats.shape(1) != 3))
    fm::value_error("mats must have shape (N, 2, 3) or (N, 3, 3) with N = x.shape[0] = ", N, ", got shape ",
                    fm::shape_str(mats));
  const bool projective = mats.shape(1) == 3;
  std::vector<double> M(size_t(9 * N));
  const double* src = mats.data();
  for (int64_t n = 0; n < N; ++n) {
    for (int r = 0; r < (projective ? 9 : 6); ++r) {
      double val = src[n * (projective ? 9 : 6) + r];
      if (!std::isfinite(val)) fm::value_error("mats must be finite (sample ", n, ")");
      M[9 * n + r] = val;
    }
    if (!projective) {
      M[9 * n + 6] = 0.0;
      M[9 * n + 7] = 0.0;
      M[9 * n + 8] = 1.0;
    }
  }
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  farray out = fm::new_farray(shape);
  const float* xp = x.data();
  float* op = out.mutable_data();
  {
    fm::nogil nogil;
    (reference ? fm::warp_reference : fm::warp)(xp, M.data(), op, N, C, H, W, projective);
  }
  return out;
}

farray noise_clip_py(py::handle x_obj, py::handle noise_obj, double std, py::object lo, py::object hi) {
  farray x = fm::float_arg(x_obj, "x", -1, "(any shape)");
  farray noise = fm::float_arg(noise_obj, "noise", -1, "(the shape of x)");
  check_same(x, "x", noise, "noise");
  check_finite_scalar(std, "std");
  float flo = 1.0f, fhi = 0.0f;  // lo > hi: no clipping
  if (!lo.is_none() || !hi.is_none()) {
    flo = lo.is_none() ? -INFINITY : float_value(lo, "lo");
    fhi = hi.is_none() ? INFINITY : float_value(hi, "hi");
    if (!(flo <= fhi)) fm::value_error("clip bounds must satisfy lo <= hi, got (", flo, ", ", fhi, ")");
  }
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  farray out = fm::new_farray(shape);
  const float* xp = x.data();
  const float* np_ = noise.data();
  float* op = out.mutable_data();
  int64_t n = x.size();
  {
    fm::nogil nogil;
    fm::add_noise_clip(xp, np_, op, n, float(std), flo, fhi);
  }
  return out;
}

}  // namespace

void bind_train(py::module_& m) {
  m.def("sgd_step", &sgd_step_py, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::arg("lr"),
        py::arg("momentum") = 0.0, py::arg("dampening") = 0.0, py::arg("weight_decay") = 0.0,
        py::arg("nesterov") = false, py::arg("first") = false, py::arg("reference") = false,
        "In-place torch.optim.SGD update of param (and momentum_buffer; first=True initialises it from the "
        "gradient). param/momentum_buffer: float32 C-contiguous writable, grad: same shape.");
  m.def("adam_step", &adam_step_py, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("step"), py::arg("lr"), py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
        py::arg("weight_decay") = 0.0, py::arg("decoupled") = false, py::arg("reference") = false,
        "In-place torch.optim.Adam (decoupled=False) / AdamW (decoupled=True) update; step is the 1-based "
        "count after this update.");
  m.def("warp", &warp_py, py::arg("x"), py::arg("mats"), py::arg("reference") = false,
        "Bilinear, zero-fill warp of each sample of x (N,C,H,W) or (N,H,W) by its own matrix: (N,2,3) affine or "
        "(N,3,3) homography mapping output pixel (col,row,1) to the input pixel it samples.");
  m.def("add_noise_clip", &noise_clip_py, py::arg("x"), py::arg("noise"), py::arg("std"), py::arg("lo") = py::none(),
        py::arg("hi") = py::none(), "clip(x + std*noise, lo, hi) (either bound may be None).");
}
