// The per-element decoders the GPU uses (kernels/common/dequant_block.h) equal the reference row
// decoders for every weight type.
#include "kernels/common/dequant_block.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/reference/dequantize.h"

namespace edgeinf::kernels {
namespace {

TEST(DequantBlock, EveryElementOfEveryTypeEqualsTheReference) {
  const int64_t n = 3 * kQK_K;  // whole blocks of every type
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  for (WeightType t : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ4_0, WeightType::kQ4_1,
                       WeightType::kQ8_0, WeightType::kQ4_K, WeightType::kQ6_K}) {
    std::vector<uint8_t> row(row_bytes(t, n));
    reference::quantize_row(t, x.data(), row.data(), n);
    std::vector<float> want(static_cast<size_t>(n));
    reference::dequantize_row(t, row.data(), want.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(weight_value(t, row.data(), i), want[size_t(i)], 1e-6f * (1.0f + std::fabs(want[size_t(i)])))
          << weight_type_traits(uint32_t(t))->name << " element " << i;
    }
  }
}

}  // namespace
}  // namespace edgeinf::kernels
