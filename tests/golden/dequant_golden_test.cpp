// Weight decoding against an independent decoder: random blocks of every quantised and half type,
// decoded by the `gguf` package (the golden_reference fixture writes dequant_vectors.bin). The
// reference decoder, the CPU's fastest decoder and the portable one must all give its values, and
// each CPU path's row dot products their dot with random activations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "kernels/cpu/vec.h"
#include "kernels/reference/dequantize.h"
#include "tests/test_paths.h"
#include "tests/tolerances.h"

namespace edgeinf::kernels {
namespace {

struct Vector {
  uint32_t type = 0, n = 0;
  std::vector<uint8_t> bytes;
  std::vector<float> decoded;
};

std::vector<Vector> read_vectors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8];
  uint32_t count = 0;
  std::vector<Vector> out;
  if (!in.read(magic, 8) || std::memcmp(magic, "EIDQV001", 8) != 0 || !in.read(reinterpret_cast<char*>(&count), 4)) {
    return out;
  }
  for (uint32_t i = 0; i < count; ++i) {
    Vector v;
    uint32_t hdr[3];
    if (!in.read(reinterpret_cast<char*>(hdr), sizeof hdr)) return {};
    v.type = hdr[0];
    v.n = hdr[1];
    v.bytes.resize(hdr[2]);
    v.decoded.resize(hdr[1]);
    if (!in.read(reinterpret_cast<char*>(v.bytes.data()), hdr[2]) ||
        !in.read(reinterpret_cast<char*>(v.decoded.data()), std::streamsize(hdr[1] * 4))) {
      return {};
    }
    out.push_back(std::move(v));
  }
  return out;
}

TEST(DequantGolden, EveryDecoderGivesTheGgufPackagesValues) {
  const std::vector<Vector> vectors = read_vectors(testing::golden_dir() + "/dequant_vectors.bin");
  ASSERT_EQ(vectors.size(), 7u) << "dequant_vectors.bin missing or damaged (the golden_reference test writes it)";
  const cpu::VecOps* paths[] = {&cpu::vec_ops(), &cpu::vec_ops_generic()};
  for (const Vector& v : vectors) {
    const auto* traits = weight_type_traits(v.type);
    ASSERT_NE(traits, nullptr) << v.type;
    SCOPED_TRACE(traits->name);
    const WeightType t = WeightType(v.type);
    const int64_t n = v.n;
    std::vector<float> got(v.n);
    reference::dequantize_row(t, v.bytes.data(), got.data(), n);
    auto c = testing::compare(got.data(), v.decoded.data(), n, testing::kDequantVsGgufTol);
    EXPECT_TRUE(c.ok) << "reference: " << c.report;
    double worst_decode = c.max_abs, worst_dot = 0;
    const std::vector<float> x = testing::random_floats(v.n, 3, 1.0f);
    double want_dot = 0;
    for (int64_t i = 0; i < n; ++i) want_dot += double(v.decoded[size_t(i)]) * x[size_t(i)];
    double scale = 0;
    for (int64_t i = 0; i < n; ++i) scale += std::fabs(double(v.decoded[size_t(i)]) * x[size_t(i)]);
    for (const cpu::VecOps* ops : paths) {
      std::fill(got.begin(), got.end(), 0.0f);
      ops->dequantize_row(t, v.bytes.data(), got.data(), n);
      auto d = testing::compare(got.data(), v.decoded.data(), n, testing::kDequantVsGgufTol);
      EXPECT_TRUE(d.ok) << ops->isa << ": " << d.report;
      const double dot = ops->dot_row(t, v.bytes.data(), x.data(), n);
      EXPECT_LE(std::fabs(dot - want_dot), testing::kDotRowVsGguf * scale)
          << ops->isa << " dot_row " << dot << " vs " << want_dot;
      worst_decode = std::max(worst_decode, d.max_abs);
      worst_dot = std::max(worst_dot, std::fabs(dot - want_dot) / scale);
    }
    std::printf("%-6s %6lld values  worst decode error %.2e  worst dot error / sum|w*x| %.2e  (%s, generic)\n",
                traits->name, static_cast<long long>(n), worst_decode, worst_dot, cpu::vec_ops().isa);
  }
}

TEST(VecOps, HonoursTheCpuOverride) {
  const char* force = std::getenv("EDGEINF_CPU");
  if (force != nullptr && std::string(force) == "generic") {
    EXPECT_STREQ(cpu::vec_ops().isa, "generic");
  } else {
    EXPECT_STRNE(cpu::vec_ops().isa, "");
  }
}

}  // namespace
}  // namespace edgeinf::kernels
