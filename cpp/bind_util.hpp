// Argument checking shared by the bind_*.cpp files: every kernel entry point validates its inputs
// here and raises a ValueError/TypeError naming the argument, never crashes on bad input.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <csignal>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "buffers.hpp"

namespace py = pybind11;

namespace fm {

using farray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using larray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

template <class... T>
[[noreturn]] inline void value_error(T&&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  throw py::value_error(s.str());
}

template <class... T>
[[noreturn]] inline void type_error(T&&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  throw py::type_error(s.str());
}

// `obj` as a C-contiguous, aligned array of T (converted or copied where needed: slices,
// transposes, views at an odd byte offset). A failed conversion or copy raises its Python error
// (MemoryError when the copy cannot be allocated, TypeError for an inconvertible dtype).
template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> carray(py::handle obj) {
  using api = py::detail::npy_api;
  PyObject* r = api::get().PyArray_FromAny_(
      obj.ptr(), py::dtype::of<T>().release().ptr(), 0, 0,
      api::NPY_ARRAY_ENSUREARRAY_ | api::NPY_ARRAY_C_CONTIGUOUS_ | api::NPY_ARRAY_ALIGNED_ | api::NPY_ARRAY_FORCECAST_,
      nullptr);
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::array_t<T, py::array::c_style | py::array::forcecast>>(r);
}

// A float32 array argument, C-contiguous and aligned (a copy is made for slices/transposes/views).
// ndim < 0 accepts any rank. `expect` describes the shape for error messages, e.g. "(N, C, H, W)".
inline farray float_arg(py::handle obj, const char* name, int ndim, const char* expect) {
  if (!py::isinstance<py::array>(obj))
    type_error(name, " must be a numpy float32 array ", expect, ", got ", std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<float>()))
    type_error(name, " must be float32 ", expect, ", got dtype ", std::string(py::str(a.dtype())));
  if (ndim >= 0 && a.ndim() != ndim)
    value_error(name, " must have ", ndim, " dimensions ", expect, ", got shape ", shape_str(a));
  return carray<float>(a);
}

// An integer label/index array, converted to int64 C-contiguous. Floats are rejected.
inline larray int_arg(py::handle obj, const char* name, int ndim, const char* expect) {
  if (!py::isinstance<py::array>(obj))
    type_error(name, " must be a numpy integer array ", expect, ", got ", std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  char k = a.dtype().kind();
  if (k != 'i' && k != 'u')
    type_error(name, " must be an integer array ", expect, ", got dtype ", std::string(py::str(a.dtype())));
  if (ndim >= 0 && a.ndim() != ndim)
    value_error(name, " must have ", ndim, " dimensions ", expect, ", got shape ", shape_str(a));
  return carray<int64_t>(a);  // uint64 >= 2^63 wraps to negative: every caller range-checks
}

// A Python integer argument (int or anything with __index__, not bool) in [lo, hi]; a clear
// TypeError/ValueError naming it otherwise (never pybind's "Unable to cast").
inline int64_t int_value(py::handle obj, const char* name, int64_t lo, int64_t hi) {
  if (PyBool_Check(obj.ptr()) || !PyIndex_Check(obj.ptr()))
    type_error(name, " must be an int, got ", std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
  if (!i) throw py::error_already_set();
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  if (overflow < 0 || (!overflow && v < lo)) value_error(name, " must be >= ", lo, ", got ", std::string(py::str(i)));
  if (overflow > 0 || v > hi) value_error(name, " must be <= ", hi, ", got ", std::string(py::str(i)));
  return v;
}

constexpr int64_t kIntMax = 2147483647;  // the kernels index with int: sizes they see stay below 2^31

// Parse an int-or-pair argument (stride=2 or stride=(2, 1)); each value in [lo, hi].
inline std::pair<int, int> pair_arg(py::handle obj, const char* name, int64_t lo = -kIntMax, int64_t hi = kIntMax) {
  if (PyIndex_Check(obj.ptr()) && !PyBool_Check(obj.ptr())) {
    int v = int(int_value(obj, name, lo, hi));
    return {v, v};
  }
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    py::sequence s = py::reinterpret_borrow<py::sequence>(obj);
    if (s.size() == 2) {
      py::object a = s[0], b = s[1];
      if (PyIndex_Check(a.ptr()) && !PyBool_Check(a.ptr()) && PyIndex_Check(b.ptr()) && !PyBool_Check(b.ptr()))
        return {int(int_value(a, name, lo, hi)), int(int_value(b, name, lo, hi))};
    }
  }
  type_error(name, " must be an int or a pair of ints, got ", std::string(py::repr(obj)));
}

// The thread count set by set_num_threads (0: OpenMP's default). OpenMP keeps the count per OS
// thread, so every binding applies it on its own thread before running a kernel (see nogil).
std::atomic<int>& thread_setting();
inline void apply_thread_setting() {
#ifdef _OPENMP
  int n = thread_setting().load(std::memory_order_relaxed);
  if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

// Releases the GIL around a kernel call, after applying the process-wide thread count.
struct nogil {
  nogil() { apply_thread_setting(); }
  py::gil_scoped_release release;
};

// A float32 array updated in place (already checked: float32, C-contiguous, writable). numpy can
// hand over views at an address that is not a multiple of 4 (a float32 view at an odd byte offset
// into a buffer); the kernels then work on an aligned copy and commit() writes it back.
struct InplaceF32 {
  py::array orig;
  farray work;
  bool copied;
  explicit InplaceF32(py::array a) : orig(std::move(a)) {
    copied = reinterpret_cast<std::uintptr_t>(orig.data()) % alignof(float) != 0;
    work = copied ? carray<float>(orig) : py::reinterpret_borrow<farray>(orig);
  }
  float* data() { return work.mutable_data(); }
  void commit() {
    if (copied) std::memcpy(orig.mutable_data(), work.data(), size_t(work.nbytes()));
  }
};

// Ctrl-C during a long kernel call. While an InterruptScope lives (created with the GIL, on
// Python's main thread; elsewhere it does nothing, as Python delivers SIGINT to the main thread
// only), SIGINT sets interrupt_flag() instead of running Python's C-level handler; kernels that
// take the flag poll it between passes and return early. finish() (with the GIL) restores
// Python's handler and, if SIGINT came, hands it on (PyErr_SetInterrupt: KeyboardInterrupt, or
// the user's Python handler) and throws. Not used where Python's handler is SIG_DFL or SIG_IGN.
std::atomic<bool>& interrupt_flag();  // module.cpp
class InterruptScope {
 public:
  InterruptScope() {
#ifndef _WIN32
    py::module_ threading = py::module_::import("threading");
    if (!threading.attr("current_thread")().is(threading.attr("main_thread")())) return;
    interrupt_flag().store(false);
    struct sigaction sa {};
    sa.sa_handler = [](int) { interrupt_flag().store(true); };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &old_) != 0) return;
    installed_ = true;
    if (old_.sa_handler == SIG_DFL || old_.sa_handler == SIG_IGN) restore();
#endif
  }
  ~InterruptScope() { restore(); }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;
  const std::atomic<bool>* flag() const { return installed_ ? &interrupt_flag() : nullptr; }
  void finish() {
    const bool was = installed_;
    restore();
    if (!was || !interrupt_flag().exchange(false)) return;
    PyErr_SetInterrupt();
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    PyErr_SetNone(PyExc_KeyboardInterrupt);  // a handler that did not raise: the call is still cut short
    throw py::error_already_set();
  }

 private:
  void restore() {
#ifndef _WIN32
    if (installed_) sigaction(SIGINT, &old_, nullptr);
#endif
    installed_ = false;
  }
#ifndef _WIN32
  struct sigaction old_ {};
#endif
  bool installed_ = false;
};

// A new C-contiguous output array, uninitialised. From kPooledMin bytes on its memory comes from
// the pool of buffers.hpp (2 MB aligned, huge pages where the kernel gives them, reused after the
// array is freed); smaller ones, shapes numpy itself rejects and all of them with
// FASTMNIST_OUTPUT_POOL=0, from numpy's allocator.
template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> new_array(std::vector<py::ssize_t> shape) {
  using A = py::array_t<T, py::array::c_style | py::array::forcecast>;
  size_t bytes = sizeof(T);
  for (py::ssize_t d : shape)
    if (d < 0 || __builtin_mul_overflow(bytes, size_t(d), &bytes)) return A(shape);  // numpy's error
  if (bytes < kPooledMin || !pool_enabled()) return A(shape);
  void* p = pooled_alloc(bytes);
  py::capsule owner(p, [](void* q) { pooled_release(q); });
  return A(shape, static_cast<T*>(p), owner);
}

inline farray new_farray(std::vector<py::ssize_t> shape) { return new_array<float>(std::move(shape)); }

}  // namespace fm
