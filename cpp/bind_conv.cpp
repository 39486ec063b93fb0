#include "bind_util.hpp"
#include "gemm.hpp"

void bind_conv(py::module_& m) {
  // Testing hook for the SGEMM: C = A @ B with optional transposes (float32 2-D arrays).
  m.def(
      "_sgemm",
      [](py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b, bool parallel) {
        auto A = fm::float_arg(a_obj, "a", 2, "(M, K)");
        auto B = fm::float_arg(b_obj, "b", 2, "(K, N)");
        int M = int(trans_a ? A.shape(1) : A.shape(0)), K = int(trans_a ? A.shape(0) : A.shape(1));
        int K2 = int(trans_b ? B.shape(1) : B.shape(0)), N = int(trans_b ? B.shape(0) : B.shape(1));
        if (K != K2) fm::value_error("_sgemm: inner dimensions differ: ", K, " vs ", K2);
        auto C = fm::new_farray({M, N});
        {
          py::gil_scoped_release nogil;
          auto f = parallel ? fm::sgemm_parallel : fm::sgemm;
          f(trans_a, trans_b, M, N, K, 1.f, A.data(), int(A.shape(1)), B.data(), int(B.shape(1)), 0.f,
            C.mutable_data(), N);
        }
        return C;
      },
      py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("parallel") = true);
}
