// The one dispatch module: the CPU's features are read once; the current instruction-set level is
// the best the CPU has, lowered by FASTMNIST_ISA=generic|neon|avx2|avx512 (read at load time) or by
// set_isa() (tests). Every kernel family picks its kernels through isa() -- most of them as a
// table per ISA instantiated by simd/instantiate.hpp and chosen with FM_PICK -- and records the
// kernel it ran with note_kernel(), which build_info()["kernels"] and `fastmnist info` report.
#pragma once

#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include "simd/simd.hpp"

namespace fm {

// Levels in increasing order of width on their architecture (neon exists only on aarch64,
// avx2/avx512 only on x86).
enum class Isa { generic = 0, neon = 1, avx2 = 2, avx512 = 3 };

struct CpuFeatures {
  bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512vl = false,
       avx512dq = false, avx512vbmi = false, neon = false;
};
const CpuFeatures& cpu_features();  // read once

bool cpu_has(Isa isa);            // the CPU runs that level (and this build compiled it)
Isa best_isa();                   // the widest level cpu_has
Isa isa();                        // the current level (<= best_isa())
const char* isa_name(Isa isa);    // "generic", "neon", "avx2", "avx512"
std::vector<const char*> isa_levels();  // names of the levels cpu_has, narrowest first
bool parse_isa(const char* name, Isa& out);  // one of the four names, any case, blanks around
// Why FASTMNIST_ISA was ignored ("" when unset, empty or applied): the package warns with it.
const std::string& isa_env_note();
// Selects `name`; returns false (and changes nothing) when it is unknown or the CPU lacks it.
bool set_isa(const char* name);
// True when kernels of x86 level `level` may run now (always false off x86).
inline bool simd_at_least(Isa level) { return FM_X86 && int(isa()) >= int(level); }

// Earlier names of the same switch, kept for the callers that use them.
inline Isa gemm_isa() { return isa(); }
inline const char* gemm_isa_name() { return isa_name(isa()); }
inline bool gemm_set_isa(const char* name) { return set_isa(name); }

// Picks the table of the current level from the per-ISA copies (nullptr where not compiled).
template <class T>
struct same_type {
  using type = T;
};
template <class T>
const T& pick_table(Isa level, const T& generic, const typename same_type<T>::type* neon,
                    const typename same_type<T>::type* avx2, const typename same_type<T>::type* avx512) {
  if (level == Isa::avx512 && avx512) return *avx512;
  if (level >= Isa::avx2 && avx2) return *avx2;
  if (level == Isa::neon && neon) return *neon;
  return generic;
}
#if FM_X86
#define FM_ISA_X86(x) (&(x))
#else
#define FM_ISA_X86(x) nullptr
#endif
#if FM_NEON
#define FM_ISA_NEON(x) (&(x))
#else
#define FM_ISA_NEON(x) nullptr
#endif
// FM_PICK_FOR(level, kGemm) / FM_PICK(kGemm): the table `kGemm` that simd/instantiate.hpp made for
// that level / the current one.
#define FM_PICK_FOR(level, var)                                                             \
  ::fm::pick_table((level), ::fm::scalar::var, FM_ISA_NEON(::fm::neon::var), FM_ISA_X86(::fm::avx2::var), \
                   FM_ISA_X86(::fm::avx512::var))
#define FM_PICK(var) FM_PICK_FOR(::fm::isa(), var)

// Which kernel each op ran last ("avx2 6x16", "avx512 vbmi stream", ...). Op names are the keys of
// build_info()["kernels"]; `kernel` must be a string literal (stored, not copied).
enum class Op {
  sgemm,
  conv2d_forward,
  conv2d_backward_input,
  conv2d_backward_weight,
  max_pool2d,
  max_pool2d_backward,
  linear,
  activation,
  softmax_cross_entropy,
  optim,
  logreg,
  augment,
  roc,
  count_
};
const char* op_name(Op op);
void note_kernel(Op op, const char* kernel);
const char* last_kernel(Op op);  // nullptr when the op has not run yet
std::vector<std::pair<std::string, std::string>> kernel_report();  // (op, last kernel or "-")
void reset_kernel_report();

}  // namespace fm
