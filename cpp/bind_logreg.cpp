#include "bind_util.hpp"

void bind_logreg(py::module_& m) {
  (void)m;
}
