// CRC-32C: the published check value, and the hardware path equal to the table at every length
// and alignment, continued across calls.
#include "engine/util/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace edgeinf {
namespace {

TEST(Crc32c, CheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32c(s.data(), s.size()), 0xE3069283u);
  EXPECT_EQ(crc32c_reference(s.data(), s.size()), 0xE3069283u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, FastPathEqualsTableAtEveryLengthAndOffset) {
  std::mt19937 rng(7);
  std::string buf(4096 + 64, '\0');
  for (char& c : buf) c = char(rng());
  for (size_t off = 0; off < 9; ++off) {
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096}) {
      ASSERT_EQ(crc32c(buf.data() + off, n), crc32c_reference(buf.data() + off, n)) << off << " " << n;
    }
  }
  // Continuing a CRC over two pieces equals one pass over both.
  const uint32_t whole = crc32c(buf.data(), 3001);
  EXPECT_EQ(crc32c(buf.data() + 1234, 3001 - 1234, crc32c(buf.data(), 1234)), whole);
}

}  // namespace
}  // namespace edgeinf
