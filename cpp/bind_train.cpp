#include "bind_util.hpp"

void bind_train(py::module_& m) {
  (void)m;
}
