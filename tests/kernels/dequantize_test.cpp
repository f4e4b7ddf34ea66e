// Weight decoding: CPU (SIMD) decoders equal the scalar reference for every type, and the
// reference decodes what the reference encoder wrote to within the type's quantisation step.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/common/fp16.h"
#include "kernels/cpu/vec.h"
#include "kernels/reference/dequantize.h"
#include "tests/tolerances.h"

namespace edgeinf::kernels {
namespace {

using testing::compare;

std::vector<float> random_floats(int64_t n, uint32_t seed, float scale) {
  return testing::random_floats(static_cast<size_t>(n), seed, scale);
}

const WeightType kAllTypes[] = {WeightType::kF32,  WeightType::kF16,  WeightType::kBF16, WeightType::kQ4_0,
                                WeightType::kQ4_1, WeightType::kQ8_0, WeightType::kQ4_K, WeightType::kQ6_K};

std::vector<uint8_t> encode(WeightType t, const std::vector<float>& x) {
  std::vector<uint8_t> bytes(row_bytes(t, int64_t(x.size())));
  reference::quantize_row(t, x.data(), bytes.data(), int64_t(x.size()));
  return bytes;
}

// Worst-case reconstruction error of each encoding relative to the block's value range.
double step_fraction(WeightType t) {
  switch (t) {
    case WeightType::kF32: return 0;
    case WeightType::kF16: return 1e-3;
    case WeightType::kBF16: return 1e-2;
    case WeightType::kQ8_0: return 1.0 / 127;
    case WeightType::kQ6_K: return 1.5 / 31;
    default: return 1.5 / 15;  // 4-bit codes
  }
}

class DequantizeTest : public ::testing::TestWithParam<WeightType> {};

TEST_P(DequantizeTest, CpuMatchesReference) {
  const WeightType t = GetParam();
  const int block = weight_type_traits(uint32_t(t))->block_elems;
  for (int64_t n : {int64_t(block) * 1, int64_t(block) * 3, int64_t(std::max(block, 32)) * 9}) {
    const std::vector<float> x = random_floats(n, 7 + uint32_t(n), 0.7f);
    const std::vector<uint8_t> bytes = encode(t, x);
    std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n)), generic(static_cast<size_t>(n));
    reference::dequantize_row(t, bytes.data(), want.data(), n);
    cpu::vec_ops().dequantize_row(t, bytes.data(), got.data(), n);
    cpu::vec_ops_generic().dequantize_row(t, bytes.data(), generic.data(), n);
    auto c = compare(got.data(), want.data(), n, testing::kDequantTol);
    EXPECT_TRUE(c.ok) << weight_type_traits(uint32_t(t))->name << " " << cpu::vec_ops().isa << ": " << c.report;
    auto g = compare(generic.data(), want.data(), n, testing::kDequantTol);
    EXPECT_TRUE(g.ok) << "generic: " << g.report;
  }
}

TEST_P(DequantizeTest, ReferenceRoundTripWithinOneStep) {
  const WeightType t = GetParam();
  const int64_t n = 512;
  const std::vector<float> x = random_floats(n, 11, 1.0f);
  const std::vector<uint8_t> bytes = encode(t, x);
  std::vector<float> y(static_cast<size_t>(n));
  reference::dequantize_row(t, bytes.data(), y.data(), n);
  float lo = x[0], hi = x[0];
  for (float v : x) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const double bound = step_fraction(t) * double(hi - lo) + 1e-7;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_LE(std::fabs(double(y[size_t(i)]) - x[size_t(i)]), bound)
        << weight_type_traits(uint32_t(t))->name << " element " << i << ": " << y[size_t(i)] << " vs " << x[size_t(i)];
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantizeTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(weight_type_traits(uint32_t(info.param))->name); });

TEST(Fp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Fp16, KnownValuesAndRounding) {
  EXPECT_EQ(fp16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_float(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x0001), 5.9604644775390625e-08f);
  EXPECT_EQ(float_to_fp16(1e6f), 0x7c00);
  EXPECT_EQ(float_to_fp16(1.0f + 1.0f / 2048), 0x3c00);  // halfway rounds to even
  EXPECT_EQ(float_to_fp16(1.0f + 3.0f / 2048), 0x3c02);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.5f)), 1.5f);
}

}  // namespace
}  // namespace edgeinf::kernels
