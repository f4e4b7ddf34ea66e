// Where tests find the real model and the reference files: environment first, then the paths
// the build was configured with.
#pragma once

#include <cstdlib>
#include <string>

namespace edgeinf::testing {

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

inline std::string test_model_path() { return env_or("EDGEINF_MODEL", EDGEINF_TEST_MODEL_PATH); }
inline std::string golden_dir() { return env_or("EDGEINF_GOLDEN_DIR", EDGEINF_TEST_GOLDEN_DIR); }
// Files kept in the repository for tests (tests/data): snapshots of earlier formats.
inline std::string test_data_dir() { return EDGEINF_TEST_DATA_DIR; }
inline std::string tokenizer_ref_path() {
  return env_or("EDGEINF_TOKENIZER_REF", (golden_dir() + "/tokenizer_ref.txt").c_str());
}

}  // namespace edgeinf::testing
