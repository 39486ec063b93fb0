#include "bind_util.hpp"

void bind_nn(py::module_& m) {
  (void)m;
}
