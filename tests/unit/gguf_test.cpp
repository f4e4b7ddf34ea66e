// GGUF reader: valid files round-trip every metadata type; every kind of malformed file is a clear
// InvalidArgument error (never a crash), including every truncation point of a valid file.
#include "engine/model/gguf.h"

#include <gtest/gtest.h>

#include <cstring>

#include "engine/model/gguf_writer.h"

namespace edgeinf {
namespace {

std::vector<uint8_t> f32_bytes(size_t n, float v) {
  std::vector<uint8_t> out(n * 4);
  for (size_t i = 0; i < n; ++i) std::memcpy(out.data() + 4 * i, &v, 4);
  return out;
}

GgufWriter valid_writer() {
  GgufWriter w;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 2);
  w.kv_i32("some.int", -7);
  w.kv_f32("some.float", 0.5f);
  w.kv_bool("some.bool", true);
  w.kv_u64("some.u64", 1ull << 40);
  w.kv_f64("some.f64", 2.25);
  w.kv_str_array("some.strings", {"a", "bc", ""});
  w.kv_f32_array("some.floats", {1.0f, -2.0f});
  w.kv_i32_array("some.ints", {3, -4, 5});
  w.tensor("a", {8, 3}, 0, f32_bytes(24, 1.5f));
  w.tensor("b", {5}, 0, f32_bytes(5, 2.0f));
  return w;
}

void expect_invalid(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  auto r = GgufFile::parse(bytes);
  ASSERT_FALSE(r.ok()) << "expected failure containing '" << fragment << "'";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(std::string(r.status().message()).find(fragment), std::string::npos) << r.status();
}

TEST(Gguf, ReadsEveryMetadataTypeAndTensor) {
  const std::vector<uint8_t> bytes = valid_writer().bytes();
  auto r = GgufFile::parse(bytes);
  ASSERT_TRUE(r.ok()) << r.status();
  const GgufFile& f = **r;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(*f.get_string("general.architecture"), "llama");
  EXPECT_EQ(*f.get_int("llama.block_count"), 2);
  EXPECT_EQ(*f.get_int("some.int"), -7);
  EXPECT_FLOAT_EQ(float(*f.get_float("some.float")), 0.5f);
  EXPECT_TRUE(*f.get_bool("some.bool"));
  EXPECT_EQ(*f.get_int("some.u64"), int64_t(1) << 40);
  EXPECT_DOUBLE_EQ(*f.get_float("some.f64"), 2.25);
  EXPECT_EQ(**f.get_string_array("some.strings"), (std::vector<std::string>{"a", "bc", ""}));
  EXPECT_EQ(**f.get_float_array("some.floats"), (std::vector<double>{1.0, -2.0}));
  EXPECT_EQ(**f.get_int_array("some.ints"), (std::vector<int64_t>{3, -4, 5}));
  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensorInfo* a = f.find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->ne[0], 8);
  EXPECT_EQ(a->ne[1], 3);
  EXPECT_EQ(a->n_bytes, 96u);
  float x = 0;
  std::memcpy(&x, f.tensor_data(*a), 4);
  EXPECT_EQ(x, 1.5f);
  EXPECT_EQ(f.find_tensor("missing"), nullptr);
}

TEST(Gguf, TypedGettersReportMissingAndMistypedKeys) {
  const std::vector<uint8_t> bytes = valid_writer().bytes();
  auto f = *GgufFile::parse(bytes);
  EXPECT_EQ(f->get_string("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(f->get_string("some.int").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->get_int("general.architecture").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->get_string_array("some.ints").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f->get_int_or("nope", 42), 42);
  EXPECT_EQ(f->get_string_or("nope", "x"), "x");
}

TEST(Gguf, VersionTwoIsAccepted) {
  GgufWriter w(2);
  w.kv_str("k", "v");
  auto r = GgufFile::parse(w.bytes());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->version(), 2u);
}

TEST(Gguf, RejectsBadMagicAndVersion) {
  std::vector<uint8_t> bytes = valid_writer().bytes();
  bytes[0] = 'X';
  expect_invalid(bytes, "bad magic");
  bytes = valid_writer().bytes();
  bytes[4] = 4;
  expect_invalid(bytes, "unsupported version 4");
  bytes = valid_writer().bytes();
  bytes[4] = 1;
  expect_invalid(bytes, "unsupported version 1");
  expect_invalid({}, "too short");
}

TEST(Gguf, EveryTruncationIsAnError) {
  const std::vector<uint8_t> bytes = valid_writer().bytes();
  for (size_t n = 0; n < bytes.size(); ++n) {
    // Cutting inside the zero padding after the last tensor leaves every tensor intact.
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(n));
    auto r = GgufFile::parse(cut);
    if (n >= bytes.size() - 12) continue;  // only padding lost
    ASSERT_FALSE(r.ok()) << "truncated at " << n << " of " << bytes.size() << " parsed";
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
}

TEST(Gguf, RejectsAbsurdCounts) {
  std::vector<uint8_t> bytes = valid_writer().bytes();
  const uint64_t huge = ~uint64_t(0);
  std::memcpy(bytes.data() + 8, &huge, 8);
  expect_invalid(bytes, "absurd tensor count");
  bytes = valid_writer().bytes();
  std::memcpy(bytes.data() + 16, &huge, 8);
  expect_invalid(bytes, "absurd metadata count");
}

TEST(Gguf, RejectsHugeStringLength) {
  GgufWriter w;
  w.kv_str("k", "value");
  std::vector<uint8_t> bytes = w.bytes();
  // The value length follows magic(4) version(4) counts(16) key len(8) "k"(1) type(4).
  const uint64_t huge = uint64_t(1) << 62;
  std::memcpy(bytes.data() + 24 + 8 + 1 + 4, &huge, 8);
  expect_invalid(bytes, "absurd");
}

TEST(Gguf, RejectsArrayLongerThanFile) {
  GgufWriter w;
  w.kv_i32_array("k", {1, 2, 3});
  std::vector<uint8_t> bytes = w.bytes();
  const uint64_t huge = uint64_t(1) << 40;
  std::memcpy(bytes.data() + 24 + 8 + 1 + 4 + 4, &huge, 8);
  expect_invalid(bytes, "overruns the file");
}

TEST(Gguf, RejectsUnknownMetadataType) {
  GgufWriter w;
  w.kv_u32("k", 1);
  std::vector<uint8_t> bytes = w.bytes();
  const uint32_t bad = 99;
  std::memcpy(bytes.data() + 24 + 8 + 1, &bad, 4);
  expect_invalid(bytes, "unknown type 99");
}

TEST(Gguf, RejectsBadTensors) {
  {
    GgufWriter w;
    w.tensor("t", {4}, 77, f32_bytes(4, 0));
    expect_invalid(w.bytes(), "unsupported type id 77");
  }
  {
    GgufWriter w;
    w.tensor("t", {4, 0}, 0, {});
    expect_invalid(w.bytes(), "dimension 1 = 0");
  }
  {
    GgufWriter w;
    w.tensor("t", {1, 1, 1, 1, 1}, 0, f32_bytes(1, 0));
    expect_invalid(w.bytes(), "5 dimensions");
  }
  {
    GgufWriter w;  // Q8_0 rows must be a multiple of 32 elements.
    w.tensor("t", {20}, 8, std::vector<uint8_t>(34));
    expect_invalid(w.bytes(), "not a multiple");
  }
  {
    GgufWriter w;  // claims far more data than the file has
    w.tensor("t", {1 << 20, 1 << 20}, 0, f32_bytes(4, 0));
    expect_invalid(w.bytes(), "larger than the file");
  }
  {
    GgufWriter w;
    w.tensor("t", {4}, 0, f32_bytes(4, 0));
    w.tensor("t", {4}, 0, f32_bytes(4, 0));
    expect_invalid(w.bytes(), "duplicate tensor name");
  }
  {
    GgufWriter w;
    w.kv_str("k", "a");
    w.kv_str("k", "b");
    expect_invalid(w.bytes(), "duplicate metadata key");
  }
}

TEST(Gguf, RejectsOverlappingAndOutOfRangeOffsets) {
  GgufWriter w;
  w.tensor("a", {8}, 0, f32_bytes(8, 0));
  w.tensor("b", {8}, 0, f32_bytes(8, 0));
  std::vector<uint8_t> bytes = w.bytes();
  // Find b's offset field: the last 8 bytes before the aligned data start that hold 32.
  const auto f = *GgufFile::parse(bytes);
  (void)f;
  size_t pos = 0;
  for (size_t i = 0; i + 8 <= bytes.size(); ++i) {
    uint64_t v;
    std::memcpy(&v, bytes.data() + i, 8);
    if (v == 32 && i > 24) {
      pos = i;
      break;
    }
  }
  ASSERT_GT(pos, 0u);
  std::vector<uint8_t> overlap = bytes;
  const uint64_t zero = 0;
  std::memcpy(overlap.data() + pos, &zero, 8);
  expect_invalid(overlap, "overlaps");
  std::vector<uint8_t> outside = bytes;
  const uint64_t far = 1 << 20;
  std::memcpy(outside.data() + pos, &far, 8);
  expect_invalid(outside, "outside the data section");
  std::vector<uint8_t> misaligned = bytes;
  const uint64_t odd = 33;
  std::memcpy(misaligned.data() + pos, &odd, 8);
  expect_invalid(misaligned, "not aligned");
}

TEST(Gguf, RejectsBadAlignment) {
  GgufWriter w;
  w.kv_u32("general.alignment", 3);
  expect_invalid(w.bytes(), "alignment");
}

TEST(Gguf, OpenReportsMissingFile) {
  auto r = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  auto d = GgufFile::open("/");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeinf
