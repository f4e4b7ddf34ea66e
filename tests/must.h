// The value of a StatusOr that a test cannot go on without, in a helper that returns a value
// (where ASSERT_ cannot stop the test): a failure names the status and ends the test process,
// instead of a null dereference a few lines later.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "engine/util/status.h"

namespace edgeinf::testing {

template <typename T>
T must(StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    ADD_FAILURE() << what << ": " << v.status();
    std::fprintf(stderr, "%s: %s\n", what, std::string(v.status().message()).c_str());
    std::abort();
  }
  return std::move(*v);
}

}  // namespace edgeinf::testing
