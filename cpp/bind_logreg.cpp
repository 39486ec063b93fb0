// Bindings for logreg.cpp (mini-batch GD epoch, forward) and roc.cpp (ROC sweep).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "bind_util.hpp"
#include "logreg.hpp"
#include "roc.hpp"

namespace {

using fm::farray;
using fm::larray;

// ROC inputs from this many scores on take Ctrl-C (an InterruptScope costs a few microseconds).
constexpr int64_t kInterruptibleN = int64_t(1) << 20;

// A float32 C-contiguous writeable array updated in place (weights, bias).
py::array_t<float> inout_arg(py::handle obj, const char* name, std::vector<py::ssize_t> shape,
                             const char* expect) {
  if (!py::isinstance<py::array_t<float>>(obj) ||
      !py::reinterpret_borrow<py::array>(obj).dtype().is(py::dtype::of<float>()))
    fm::type_error(name, " must be a float32 numpy array ", expect);
  auto a = py::reinterpret_borrow<py::array_t<float>>(obj);
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    fm::value_error(name, " must be C-contiguous and writeable (it is updated in place)");
  if (a.ndim() != (py::ssize_t)shape.size())
    fm::value_error(name, " must have shape ", expect, ", got ", fm::shape_str(a));
  for (size_t i = 0; i < shape.size(); ++i)
    if (a.shape(i) != shape[i]) fm::value_error(name, " must have shape ", expect, ", got ", fm::shape_str(a));
  return a;
}

// Optional (D,) standardisation vector.
const float* opt_vec(py::handle obj, const char* name, py::ssize_t D, farray& keep) {
  if (obj.is_none()) return nullptr;
  keep = fm::float_arg(obj, name, 1, "(D,)");
  if (keep.shape(0) != D) fm::value_error(name, " must have shape (", D, ",), got ", fm::shape_str(keep));
  return keep.data();
}

// Hands a vector's buffer to numpy without copying (the capsule owns it).
py::array_t<double> to_numpy(std::vector<double>&& v) {
  auto* heap = new std::vector<double>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<double>*>(p); });
  return py::array_t<double>({(py::ssize_t)heap->size()}, {(py::ssize_t)sizeof(double)}, heap->data(), owner);
}

py::tuple curve_tuple(fm::RocCurve& c) {
  return py::make_tuple(to_numpy(std::move(c.fpr)), to_numpy(std::move(c.tpr)), to_numpy(std::move(c.thresholds)));
}

void roc_status_check(fm::RocStatus s, const std::string& what) {
  switch (s) {
    case fm::ROC_OK: return;
    case fm::ROC_NONFINITE: fm::value_error(what, "y_score contains NaN or infinite values");
    case fm::ROC_NO_POSITIVE:
      fm::value_error(what, "y_true has no positive sample: the ROC curve is undefined with one class only");
    case fm::ROC_NO_NEGATIVE:
      fm::value_error(what, "y_true has no negative sample: the ROC curve is undefined with one class only");
    case fm::ROC_CANCELLED: break;  // only with an InterruptScope, whose finish() has raised
  }
}

}  // namespace

void bind_logreg(py::module_& m) {
  m.def(
      "logreg_epoch",
      [](py::handle X_, py::handle y_, py::handle perm_, py::handle W_, py::handle b_,
         py::handle mean_, py::handle scale_, float lr, float l2, py::handle batch_obj, bool reference) {
        farray X = fm::float_arg(X_, "X", 2, "(N, D)");
        larray y = fm::int_arg(y_, "y", 1, "(N,)");
        larray perm = fm::int_arg(perm_, "perm", 1, "(M,)");
        const py::ssize_t N = X.shape(0), D = X.shape(1);
        if (y.shape(0) != N) fm::value_error("y must have shape (", N, ",) to match X ", fm::shape_str(X), ", got ", fm::shape_str(y));
        if (!py::isinstance<py::array>(W_)) fm::type_error("W must be a float32 numpy array (C, D)");
        const py::ssize_t C = py::reinterpret_borrow<py::array>(W_).ndim() == 2 ? py::reinterpret_borrow<py::array>(W_).shape(0) : -1;
        auto W = inout_arg(W_, "W", {C, D}, "(C, D) with D = X.shape[1]");
        auto b = inout_arg(b_, "b", {C}, "(C,)");
        if (C < 1) fm::value_error("W must have at least one class row");
        const int batch_size = int(fm::int_value(batch_obj, "batch_size", 1, fm::kIntMax));
        if (D > fm::kIntMax || C > fm::kIntMax) fm::value_error("X/W dimensions must be below 2^31, got W ", fm::shape_str(W));
        if (!(lr > 0) || !std::isfinite(lr)) fm::value_error("lr must be a positive finite number, got ", lr);
        if (!(l2 >= 0) || !std::isfinite(l2)) fm::value_error("l2 must be >= 0, got ", l2);
        farray mk, sk;
        const float* mean = opt_vec(mean_, "mean", D, mk);
        const float* scale = opt_vec(scale_, "scale", D, sk);
        if ((mean == nullptr) != (scale == nullptr)) fm::value_error("mean and scale must be given together");
        const int64_t* yp = y.data();
        for (py::ssize_t i = 0; i < N; ++i)
          if (yp[i] < 0 || yp[i] >= C) fm::value_error("y must hold class indices in [0, ", C, "), got ", yp[i], " at index ", i);
        const int64_t* pp = perm.data();
        const py::ssize_t M = perm.shape(0);
        for (py::ssize_t i = 0; i < M; ++i)
          if (pp[i] < 0 || pp[i] >= N) fm::value_error("perm must hold row indices in [0, ", N, "), got ", pp[i], " at index ", i);
        // The epoch runs in chunks of whole batches (the same updates as one call: batch k is
        // perm[k*B : (k+1)*B] either way), re-taking the GIL between chunks to honour Ctrl-C.
        const int64_t per_chunk = std::max<int64_t>(1, ((int64_t)1 << 26) / std::max<int64_t>(1, D * C) / batch_size);
        const int64_t chunk = per_chunk * batch_size;
        fm::InplaceF32 Ww(W), bw(b);
        double loss_sum = 0;
        int64_t correct = 0;
        for (int64_t start = 0; start < M || start == 0; start += chunk) {
          const int64_t m = std::min(chunk, M - start);
          fm::LogregEpochStats st;
          {
            fm::nogil nogil;
            auto fn = reference ? fm::logreg_epoch_reference : fm::logreg_epoch;
            st = fn(X.data(), yp, pp + start, m, (int)D, (int)C, Ww.data(), bw.data(), mean, scale, lr, l2, batch_size);
          }
          loss_sum += st.loss_sum;
          correct += st.correct;
          if (start + m < M && PyErr_CheckSignals() != 0) {
            Ww.commit();
            bw.commit();
            throw py::error_already_set();
          }
          if (M == 0) break;
        }
        Ww.commit();
        bw.commit();
        return py::make_tuple(loss_sum, correct);
      },
      py::arg("X"), py::arg("y"), py::arg("perm"), py::arg("W"), py::arg("b"), py::arg("mean") = py::none(),
      py::arg("scale") = py::none(), py::arg("lr"), py::arg("l2") = 0.f, py::arg("batch_size"),
      py::arg("reference") = false,
      "One epoch of mini-batch GD on softmax cross-entropy, in place on W (C, D) and b (C,); "
      "batches are consecutive slices of perm. Returns (sum of per-sample losses, correct count).");

  m.def(
      "logreg_forward",
      [](py::handle X_, py::handle W_, py::handle b_, py::handle mean_, py::handle scale_, bool softmax) {
        farray X = fm::float_arg(X_, "X", 2, "(N, D)");
        farray W = fm::float_arg(W_, "W", 2, "(C, D)");
        farray b = fm::float_arg(b_, "b", 1, "(C,)");
        const py::ssize_t N = X.shape(0), D = X.shape(1), C = W.shape(0);
        if (W.shape(1) != D) fm::value_error("X has ", D, " features but W has shape ", fm::shape_str(W));
        if (b.shape(0) != C) fm::value_error("b must have shape (", C, ",), got ", fm::shape_str(b));
        if (D > fm::kIntMax || C > fm::kIntMax) fm::value_error("X/W dimensions must be below 2^31, got W ", fm::shape_str(W));
        farray mk, sk;
        const float* mean = opt_vec(mean_, "mean", D, mk);
        const float* scale = opt_vec(scale_, "scale", D, sk);
        if ((mean == nullptr) != (scale == nullptr)) fm::value_error("mean and scale must be given together");
        farray out = fm::new_farray({N, C});
        {
          fm::nogil nogil;
          fm::logreg_forward(X.data(), N, (int)D, (int)C, W.data(), b.data(), mean, scale, out.mutable_data(), softmax);
        }
        return out;
      },
      py::arg("X"), py::arg("W"), py::arg("b"), py::arg("mean") = py::none(), py::arg("scale") = py::none(),
      py::arg("softmax") = true, "X (N, D) -> (N, C) softmax probabilities (or logits).");

  m.def("logreg_kernel_path", &fm::logreg_kernel_path);

  m.def(
      "roc_curve",
      [](py::handle score_, py::handle pos_, bool drop_intermediate, bool reference) {
        if (!py::isinstance<py::array>(score_)) fm::type_error("y_score must be a numpy array");
        py::array s = py::reinterpret_borrow<py::array>(score_);
        if (s.ndim() != 1) fm::value_error("y_score must be 1-D (n,), got shape ", fm::shape_str(s));
        if (!py::isinstance<py::array>(pos_)) fm::type_error("positive must be a numpy array (n,) of 0/1");
        const char pk = py::reinterpret_borrow<py::array>(pos_).dtype().kind();
        if (pk != 'b' && pk != 'i' && pk != 'u')
          fm::type_error("positive must be a boolean or integer array, got dtype ",
                         std::string(py::str(py::reinterpret_borrow<py::array>(pos_).dtype())));
        const char sk = s.dtype().kind();
        if (sk != 'f' && sk != 'i' && sk != 'u' && sk != 'b')
          fm::type_error("y_score must be a real array, got dtype ", std::string(py::str(s.dtype())));
        auto pos = fm::carray<uint8_t>(pos_.attr("astype")(py::dtype("bool")));
        if (pos.ndim() != 1 || pos.shape(0) != s.shape(0))
          fm::value_error("y_true and y_score must have the same length, got ", fm::shape_str(pos), " and ", fm::shape_str(s));
        const int64_t n = s.shape(0);
        fm::RocCurve c;
        fm::RocStatus st;
        std::unique_ptr<fm::InterruptScope> intr;  // Ctrl-C on inputs large enough to take a while
        if (n >= kInterruptibleN) intr = std::make_unique<fm::InterruptScope>();
        const std::atomic<bool>* cancel = intr ? intr->flag() : nullptr;
        if (s.dtype().is(py::dtype::of<float>()) && !reference) {
          auto a = fm::carray<float>(s);
          fm::nogil nogil;
          st = fm::roc_curve(a.data(), 1, pos.data(), n, drop_intermediate, c, true, cancel);
        } else {
          auto a = fm::carray<double>(s);
          fm::nogil nogil;
          st = reference ? fm::roc_curve_reference(a.data(), pos.data(), n, drop_intermediate, c)
                         : fm::roc_curve(a.data(), 1, pos.data(), n, drop_intermediate, c, true, cancel);
        }
        if (intr) intr->finish();
        roc_status_check(st, "");
        return curve_tuple(c);
      },
      py::arg("y_score"), py::arg("positive"), py::arg("drop_intermediate") = true, py::arg("reference") = false,
      "y_score (n,) float32/float64, positive (n,) 0/1 -> (fpr, tpr, thresholds) float64.");

  m.def(
      "roc_curve_ovr",
      [](py::handle y_, py::handle proba_, bool drop_intermediate) {
        larray y = fm::int_arg(y_, "y_true", 1, "(n,)");
        if (!py::isinstance<py::array>(proba_)) fm::type_error("proba must be a numpy array (n, C)");
        py::array p = py::reinterpret_borrow<py::array>(proba_);
        if (p.ndim() != 2) fm::value_error("proba must be 2-D (n, C), got shape ", fm::shape_str(p));
        const int64_t n = p.shape(0), C = p.shape(1);
        if (y.shape(0) != n) fm::value_error("y_true and proba must have the same length, got ", fm::shape_str(y), " and ", fm::shape_str(p));
        const char pk = p.dtype().kind();
        if (pk != 'f' && pk != 'i' && pk != 'u' && pk != 'b')
          fm::type_error("proba must be a real array, got dtype ", std::string(py::str(p.dtype())));
        const bool f32 = p.dtype().is(py::dtype::of<float>());
        py::array_t<float, py::array::c_style | py::array::forcecast> pf;
        py::array_t<double, py::array::c_style | py::array::forcecast> pd;
        if (f32) pf = fm::carray<float>(p);
        else pd = fm::carray<double>(p);
        std::vector<fm::RocCurve> curves(C);
        std::vector<fm::RocStatus> status(C, fm::ROC_OK);
        std::unique_ptr<fm::InterruptScope> intr;
        if (n * C >= kInterruptibleN) intr = std::make_unique<fm::InterruptScope>();
        const std::atomic<bool>* cancel = intr ? intr->flag() : nullptr;
        {
          // one class per thread (each sort serial inside)
          fm::nogil nogil;
          const int64_t* yp = y.data();
#pragma omp parallel
          {
            std::vector<uint8_t> pos(n);
#pragma omp for schedule(dynamic, 1)
            for (int64_t c = 0; c < C; ++c) {
              for (int64_t i = 0; i < n; ++i) pos[i] = yp[i] == c;
              status[c] = f32 ? fm::roc_curve(pf.data() + c, C, pos.data(), n, drop_intermediate, curves[c], false, cancel)
                              : fm::roc_curve(pd.data() + c, C, pos.data(), n, drop_intermediate, curves[c], false, cancel);
            }
          }
        }
        if (intr) intr->finish();
        py::list out;
        for (int64_t c = 0; c < C; ++c) {
          roc_status_check(status[c], "class " + std::to_string(c) + ": ");
          out.append(curve_tuple(curves[c]));
        }
        return out;
      },
      py::arg("y_true"), py::arg("proba"), py::arg("drop_intermediate") = true,
      "One-vs-rest ROC curves for every column c of proba (n, C): positives are y_true == c.");
}
