// Argument checking shared by the bind_*.cpp files: every kernel entry point validates its inputs
// here and raises a ValueError/TypeError naming the argument, never crashes on bad input.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

// A float32 array argument, C-contiguous (a copy is made for slices/transposes/views).
// ndim < 0 accepts any rank. `expect` describes the shape for error messages, e.g. "(N, C, H, W)".
inline farray float_arg(py::handle obj, const char* name, int ndim, const char* expect) {
  if (!py::isinstance<py::array>(obj))
    type_error(name, " must be a numpy float32 array ", expect, ", got ", std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().equal(py::dtype::of<float>()))
    type_error(name, " must be float32 ", expect, ", got dtype ", std::string(py::str(a.dtype())));
  if (ndim >= 0 && a.ndim() != ndim)
    value_error(name, " must have ", ndim, " dimensions ", expect, ", got shape ", shape_str(a));
  return farray::ensure(a);
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
  return larray::ensure(a);
}

// Parse an int-or-pair argument (stride=2 or stride=(2, 1)).
inline std::pair<int, int> pair_arg(py::handle obj, const char* name) {
  if (py::isinstance<py::int_>(obj)) {
    int v = obj.cast<int>();
    return {v, v};
  }
  if (py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj)) {
    py::sequence s = py::reinterpret_borrow<py::sequence>(obj);
    if (s.size() == 2 && py::isinstance<py::int_>(s[0]) && py::isinstance<py::int_>(s[1]))
      return {s[0].cast<int>(), s[1].cast<int>()};
  }
  type_error(name, " must be an int or a pair of ints, got ", std::string(py::repr(obj)));
}

inline farray new_farray(std::vector<py::ssize_t> shape) { return farray(shape); }

}  // namespace fm
