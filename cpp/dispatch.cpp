#include "dispatch.hpp"

#include <cctype>
#include <cstdlib>
#include <string>

namespace fm {

static CpuFeatures read_cpu() {
  CpuFeatures f;
#if FM_X86
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vbmi = __builtin_cpu_supports("avx512vbmi");
#endif
#if FM_NEON
  f.neon = true;  // baseline on aarch64
#endif
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = read_cpu();
  return f;
}

bool cpu_has(Isa level) {
  const CpuFeatures& f = cpu_features();
  switch (level) {
    case Isa::generic: return true;
    case Isa::neon: return FM_NEON && f.neon;
    case Isa::avx2: return FM_X86 && f.avx2 && f.fma;
    case Isa::avx512: return FM_X86 && f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  }
  return false;
}

Isa best_isa() {
  for (Isa l : {Isa::avx512, Isa::avx2, Isa::neon})
    if (cpu_has(l)) return l;
  return Isa::generic;
}

std::vector<const char*> isa_levels() {
  std::vector<const char*> out;
  for (Isa l : {Isa::generic, Isa::neon, Isa::avx2, Isa::avx512})
    if (cpu_has(l)) out.push_back(isa_name(l));
  return out;
}

const char* isa_name(Isa level) {
  switch (level) {
    case Isa::generic: return "generic";
    case Isa::neon: return "neon";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "generic";
}

bool parse_isa(const char* name, Isa& out) {
  if (!name) return false;
  // case and surrounding blanks do not matter ("AVX2 " is avx2)
  std::string s(name);
  const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  s = b == std::string::npos ? "" : s.substr(b, e - b + 1);
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (Isa l : {Isa::generic, Isa::neon, Isa::avx2, Isa::avx512})
    if (s == isa_name(l)) {
      out = l;
      return true;
    }
  return false;
}

// FASTMNIST_ISA only lowers: an unknown name, or a level this CPU (or build) lacks, is ignored and
// `note` says so (unset or empty: no note).
static Isa initial_isa(std::string& note) {
  const Isa best = best_isa();
  const char* v = std::getenv("FASTMNIST_ISA");
  if (!v || !*v) return best;
  Isa env;
  const std::string asked = std::string("FASTMNIST_ISA=") + v, runs = std::string(isa_name(best));
  if (!parse_isa(v, env)) {
    note = asked + " is not one of generic, neon, avx2, avx512: ignored, the kernels run at " + runs;
  } else if (!cpu_has(env)) {
    std::string levels;
    for (const char* l : isa_levels()) levels += (levels.empty() ? "" : ", ") + std::string(l);
    note = asked + ": this CPU (or build) cannot run " + isa_name(env) + " kernels (it runs " + levels +
           "): ignored, the kernels run at " + runs;
  } else {
    return env;
  }
  return best;
}

struct Current {
  std::string note;
  std::atomic<int> level;
  Current() : level(int(initial_isa(note))) {}
};

static Current& current_state() {
  static Current c;
  return c;
}

static std::atomic<int>& current() { return current_state().level; }

const std::string& isa_env_note() { return current_state().note; }

Isa isa() { return Isa(current().load(std::memory_order_relaxed)); }

bool set_isa(const char* name) {
  Isa l;
  if (!parse_isa(name, l) || !cpu_has(l)) return false;
  current().store(int(l));
  return true;
}

// ---------------------------------------------------------------------------------------------
// kernel report
// ---------------------------------------------------------------------------------------------

static const char* const kOpNames[] = {"sgemm",      "conv2d_forward",        "conv2d_backward_input",
                                       "conv2d_backward_weight", "max_pool2d", "max_pool2d_backward",
                                       "linear",     "activation",            "softmax_cross_entropy",
                                       "optim",      "logreg",                "augment",
                                       "roc"};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == size_t(Op::count_), "one name per Op");

static std::atomic<const char*> g_last[size_t(Op::count_)];

const char* op_name(Op op) { return kOpNames[size_t(op)]; }
void note_kernel(Op op, const char* kernel) { g_last[size_t(op)].store(kernel, std::memory_order_relaxed); }
const char* last_kernel(Op op) { return g_last[size_t(op)].load(std::memory_order_relaxed); }

std::vector<std::pair<std::string, std::string>> kernel_report() {
  std::vector<std::pair<std::string, std::string>> r;
  for (size_t i = 0; i < size_t(Op::count_); ++i) {
    const char* k = g_last[i].load(std::memory_order_relaxed);
    r.emplace_back(kOpNames[i], k ? k : "-");
  }
  return r;
}

void reset_kernel_report() {
  for (auto& a : g_last) a.store(nullptr, std::memory_order_relaxed);
}

}  // namespace fm
