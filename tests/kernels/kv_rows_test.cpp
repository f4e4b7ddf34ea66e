// The KV caches' encoders and decoders (kernels/common/kv_rows.h), shared by host and device code,
// against the reference quantisers: the same bytes for f16 and q8 on ordinary, evenly spaced,
// tiny, huge and all-zero blocks, and the same values back for every type.
#include "kernels/common/kv_rows.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/reference/dequantize.h"

namespace edgeinf::kernels {
namespace {

std::vector<float> awkward_values() {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t(8 * kQK));
  for (float& v : x) v = normal(rng);
  for (int j = 0; j < kQK; ++j) x[size_t(kQK + j)] = 0.0f;                               // an all-zero block
  for (int j = 0; j < kQK; ++j) x[size_t(2 * kQK + j)] = float(j - 16) * 0.5f;           // a ramp of exact halves
  for (int j = 0; j < kQK; ++j) x[size_t(3 * kQK + j)] = 1e-30f * float(j + 1);          // below fp16's range
  for (int j = 0; j < kQK; ++j) x[size_t(4 * kQK + j)] = 6e4f * (j % 2 ? 1.0f : -1.0f);  // near fp16's top
  x[size_t(5 * kQK)] = -3.0f;  // one large negative value sets the scale of its block
  return x;
}

TEST(KvRows, EncodersWriteTheReferenceQuantisersBytes) {
  const std::vector<float> x = awkward_values();
  const int64_t n = int64_t(x.size());
  for (WeightType t : {WeightType::kF32, WeightType::kF16, WeightType::kQ8_0}) {
    ASSERT_TRUE(kv_type_supported(t));
    const size_t bytes = kv_value_offset(t, n);
    ASSERT_EQ(bytes, row_bytes(t, n));
    std::vector<uint8_t> got(bytes), want(bytes);
    encode_kv_values(t, x.data(), got.data(), n);
    reference::quantize_row(t, x.data(), want.data(), n);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), bytes), 0) << weight_type_traits(uint32_t(t))->name;
  }
  EXPECT_FALSE(kv_type_supported(WeightType::kQ4_0));
  EXPECT_EQ(kv_block_values(WeightType::kQ8_0), kQK);
  EXPECT_EQ(kv_block_values(WeightType::kF16), 1);
}

template <WeightType T>
void expect_decoded_values_equal_the_reference(const std::vector<float>& x) {
  const int64_t n = int64_t(x.size());
  std::vector<uint8_t> row(kv_value_offset(T, n));
  encode_kv_values(T, x.data(), row.data(), n);
  std::vector<float> want(x.size());
  reference::dequantize_row(T, row.data(), want.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(kv_value<T>(row.data(), i), want[size_t(i)]) << weight_type_traits(uint32_t(T))->name << " value " << i;
  }
}

TEST(KvRows, DecodedValuesEqualTheReferenceDecoder) {
  const std::vector<float> x = awkward_values();
  expect_decoded_values_equal_the_reference<WeightType::kF32>(x);
  expect_decoded_values_equal_the_reference<WeightType::kF16>(x);
  expect_decoded_values_equal_the_reference<WeightType::kQ8_0>(x);
}

// q8 keeps each value within half a step of its block (d = max |x| / 127) plus 127 times the
// scale's fp16 rounding (2^-11 d): 0.5625 d; f16 within half a unit in the last place (2^-11
// relative, for normal halves).
TEST(KvRows, EncodingErrorIsWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(size_t(64 * kQK));
  for (float& v : x) v = normal(rng);
  const int64_t n = int64_t(x.size());
  std::vector<uint8_t> q8(kv_value_offset(WeightType::kQ8_0, n)), f16(kv_value_offset(WeightType::kF16, n));
  encode_kv_values(WeightType::kQ8_0, x.data(), q8.data(), n);
  encode_kv_values(WeightType::kF16, x.data(), f16.data(), n);
  for (int64_t b = 0; b < n / kQK; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[size_t(b * kQK + j)]));
    for (int j = 0; j < kQK; ++j) {
      const int64_t i = b * kQK + j;
      EXPECT_LE(std::fabs(kv_value<WeightType::kQ8_0>(q8.data(), i) - x[size_t(i)]), amax / 127.0f * 0.5625f) << i;
      EXPECT_LE(std::fabs(kv_value<WeightType::kF16>(f16.data(), i) - x[size_t(i)]),
                std::fabs(x[size_t(i)]) * 0.00049f + 3e-8f)
          << i;
    }
  }
}

}  // namespace
}  // namespace edgeinf::kernels
