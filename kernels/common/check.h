// EDGEINF_CHECK: aborts with file and line when an internal invariant is broken (never for bad input).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace edgeinf {

[[noreturn]] inline void check_failed(const char* file, int line, const char* expr) {
  std::fprintf(stderr, "%s:%d: EDGEINF_CHECK(%s) failed\n", file, line, expr);
  std::abort();
}

}  // namespace edgeinf

#define EDGEINF_CHECK(cond)                                          \
  do {                                                               \
    if (!(cond)) ::edgeinf::check_failed(__FILE__, __LINE__, #cond); \
  } while (0)
