// fastmnist._core: the pybind11 module. Each kernel family registers its functions from its own
// bind_*.cpp (validation, GIL release, numpy in/out); this file holds the module-wide pieces:
// thread control and build information.
#include <pybind11/pybind11.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bind_util.hpp"
#include "buffers.hpp"
#include "common.hpp"
#include "gemm.hpp"

namespace py = pybind11;

void bind_conv(py::module_& m);    // bind_conv.cpp: conv2d, gemm
void bind_nn(py::module_& m);      // bind_nn.cpp: pooling, activations, linear, losses
void bind_train(py::module_& m);   // bind_train.cpp: optimizer steps, augmentation warps
void bind_logreg(py::module_& m);  // bind_logreg.cpp: logistic regression, ROC sweep

#ifndef FASTMNIST_VERSION
#define FASTMNIST_VERSION "dev"
#endif
#ifndef FASTMNIST_BUILD_FLAGS
#define FASTMNIST_BUILD_FLAGS "unknown"
#endif
// CMake defines these two; a build outside it (setup.py, a plain compiler line) gets these defaults.
#ifndef FASTMNIST_NATIVE_BUILD
#define FASTMNIST_NATIVE_BUILD 0
#endif
#ifndef FASTMNIST_OPENMP
#ifdef _OPENMP
#define FASTMNIST_OPENMP 1
#else
#define FASTMNIST_OPENMP 0
#endif
#endif

// glibc hands a freed block of more than its mmap threshold back to the kernel, and trims the top of
// the heap beyond its trim threshold: a training step that frees and reallocates activations of a
// few MB (the `fast` model's 14 MB first conv output at batch 256) then page-faults them in again every
// step: 190k minor faults and 3.9 s instead of 26k and 2.8 s for `fastmnist train fast` on AVX2. The
// module raises both thresholds once at import, unless FASTMNIST_MALLOC=0 or the environment already
// sets them (GLIBC_TUNABLES malloc.*_threshold, MALLOC_*_THRESHOLD_). build_info()["malloc"] says which.
static std::string tune_malloc() {
#if defined(__GLIBC__)
  const char* opt = std::getenv("FASTMNIST_MALLOC");
  if (opt && std::strcmp(opt, "0") == 0) return "glibc defaults (FASTMNIST_MALLOC=0)";
  const char* tun = std::getenv("GLIBC_TUNABLES");
  if ((tun && (std::strstr(tun, "malloc.mmap_threshold") || std::strstr(tun, "malloc.trim_threshold"))) ||
      std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_"))
    return "as the environment sets it";
  if (mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1)
    return "mmap threshold 64 MiB, trim threshold 256 MiB";
  return "glibc defaults (mallopt refused)";
#else
  return "system defaults (not glibc)";
#endif
}

// The kernel's transparent huge page mode ("always", "madvise", "never"), or "unknown".
static std::string thp_mode() {
#if defined(__linux__)
  if (FILE* f = std::fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r")) {
    char buf[128] = {0};
    const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* l = std::strchr(buf, '['), *r = l ? std::strchr(l, ']') : nullptr;
    if (l && r) return std::string(l + 1, r);
  }
#endif
  return "unknown";
}

static std::string& malloc_setting() {
  static std::string s = tune_malloc();
  return s;
}

static py::dict build_info() {
  py::dict d;
  d["version"] = FASTMNIST_VERSION;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["build_flags"] = FASTMNIST_BUILD_FLAGS;
  d["native_build"] = bool(FASTMNIST_NATIVE_BUILD);
  std::string isa = "baseline";
#if defined(__AVX512F__)
  isa = "avx512f";
#elif defined(__AVX2__)
  isa = "avx2";
#elif defined(__SSE2__)
  isa = "sse2";
#endif
  d["compiled_isa"] = isa;
  py::dict cpu;
  const fm::CpuFeatures& f = fm::cpu_features();
#if FM_X86
  cpu["avx2"] = f.avx2;
  cpu["fma"] = f.fma;
  cpu["avx512f"] = f.avx512f;
  cpu["avx512bw"] = f.avx512bw;
  cpu["avx512vl"] = f.avx512vl;
  cpu["avx512dq"] = f.avx512dq;
  cpu["avx512vbmi"] = f.avx512vbmi;
#endif
#if FM_NEON
  cpu["neon"] = f.neon;
#endif
  d["cpu_features"] = cpu;
  // the instruction-set level the kernels run at (FASTMNIST_ISA=generic|neon|avx2|avx512 lowers it)
  d["dispatch"] = std::string(fm::isa_name(fm::isa()));
  py::list levels;
  for (const char* l : fm::isa_levels()) levels.append(l);
  d["isa_levels"] = levels;
  d["isa_env_note"] = fm::isa_env_note();
  // the kernel each op ran last in this process ("-": not run yet)
  py::dict kernels;
  for (auto& [op, k] : fm::kernel_report()) kernels[py::str(op)] = k;
  d["kernels"] = kernels;
  d["malloc"] = malloc_setting();
  const std::string mib = std::to_string(fm::kPooledMin >> 20) + " MiB";
  d["output_pool"] = fm::pool_enabled()
                        ? "outputs of " + mib + " or more: " + mib + "-aligned blocks marked for transparent huge pages "
                          "(the kernel's mode: " + thp_mode() + "), up to " + std::to_string(fm::kPoolCap >> 20) +
                          " MiB of freed ones kept for reuse (fastmnist.empty_cache())"
                        : "off (FASTMNIST_OUTPUT_POOL=0): outputs from numpy's allocator";
  d["openmp"] = bool(FASTMNIST_OPENMP);
#ifdef _OPENMP
  d["openmp_version"] = int(_OPENMP);
#endif
  return d;
}

std::atomic<int>& fm::thread_setting() {
  static std::atomic<int> n{0};
  return n;
}

std::atomic<bool>& fm::interrupt_flag() {
  static std::atomic<bool> f{false};
  return f;
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmnist C++ kernels (use the wrappers in the fastmnist package)";
  malloc_setting();
  m.def(
      "set_num_threads",
      [](py::handle n_obj) {
        // process-wide: stored here and applied by every binding on its own OS thread (fm::nogil)
        int n = int(fm::int_value(n_obj, "set_num_threads: n", 1, 1 << 16));
        fm::thread_setting().store(n);
        fm::apply_thread_setting();
      },
      py::arg("n"));
  m.def("get_num_threads", []() {
    int n = fm::thread_setting().load();
    return n > 0 ? n : fm::max_threads();
  });
  m.def("build_info", &build_info);
  m.def("kernel_report", []() {
    py::dict d;
    for (auto& [op, k] : fm::kernel_report()) d[py::str(op)] = k;
    return d;
  }, "The kernel each op ran last in this process ('-' where it has not run).");
  m.def("_reset_kernel_report", &fm::reset_kernel_report);
  m.def("empty_cache", &fm::pool_trim,
        "Frees the memory of released kernel outputs kept for reuse (see build_info()['output_pool']).");
  m.def("_output_pool_stats", []() {
    const fm::PoolStats st = fm::pool_stats();
    py::dict d;
    d["live_blocks"] = st.live_blocks, d["cached_blocks"] = st.cached_blocks, d["cached_bytes"] = st.cached_bytes;
    d["cap_bytes"] = fm::kPoolCap, d["min_bytes"] = fm::kPooledMin;
    return d;
  });
  bind_conv(m);
  bind_nn(m);
  bind_train(m);
  bind_logreg(m);
}
