// EdgeInfinite's compressed memory: CPU kernels (the query projection among them) against the
// scalar reference on odd shapes, the memory math against a naive per-token linear-attention loop,
// and the delta rule's fixed point.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/common/linear_memory.h"
#include "kernels/cpu/ops.h"
#include "kernels/reference/memory.h"
#include "tests/tolerances.h"

namespace edgeinf::kernels {
namespace {

using testing::compare;
using testing::random_floats;

cpu::ThreadPool& pool() {
  static cpu::ThreadPool p(2);
  return p;
}

struct Shape {
  int n_head, n_kv_head, head_dim;
  int64_t n_tok;
};

class MemoryKernelTest : public ::testing::TestWithParam<Shape> {};

TEST_P(MemoryKernelTest, CompressDecompressBlendMatchReference) {
  const Shape s = GetParam();
  const int d = s.head_dim;
  const int64_t kv_stride = int64_t(s.n_kv_head) * d, q_stride = int64_t(s.n_head) * d;
  for (bool delta : {false, true}) {
    // Start from a memory that already holds a segment, so the delta rule has something to subtract.
    std::vector<float> m_ref(size_t(s.n_kv_head) * d * d), z_ref(size_t(s.n_kv_head) * d);
    MemoryCompressParams c;
    c.m = m_ref.data();
    c.z = z_ref.data();
    c.kv_stride = kv_stride;
    c.n_kv_head = s.n_kv_head;
    c.head_dim = d;
    c.delta = delta;
    const std::vector<float> k0 = random_floats(size_t(11 * kv_stride), 1),
                             v0 = random_floats(size_t(11 * kv_stride), 2);
    c.k = k0.data();
    c.v = v0.data();
    c.n_tok = 11;
    reference::memory_compress(c);
    std::vector<float> m_cpu = m_ref, z_cpu = z_ref;

    const std::vector<float> k = random_floats(size_t(s.n_tok * kv_stride), 3),
                             v = random_floats(size_t(s.n_tok * kv_stride), 4);
    c.k = k.data();
    c.v = v.data();
    c.n_tok = s.n_tok;
    reference::memory_compress(c);
    c.m = m_cpu.data();
    c.z = z_cpu.data();
    cpu::memory_compress(c, pool());
    auto cm = compare(m_cpu.data(), m_ref.data(), int64_t(m_ref.size()), testing::kMemoryTol);
    EXPECT_TRUE(cm.ok) << "M delta=" << delta << ": " << cm.report;
    auto cz = compare(z_cpu.data(), z_ref.data(), int64_t(z_ref.size()), testing::kMemoryTol);
    EXPECT_TRUE(cz.ok) << "z: " << cz.report;

    const std::vector<float> q = random_floats(size_t(s.n_tok * q_stride), 5);
    std::vector<float> a_ref(q.size()), a_cpu(q.size());
    MemoryDecompressParams r;
    r.m = m_ref.data();
    r.z = z_ref.data();
    r.q = q.data();
    r.q_stride = q_stride;
    r.n_tok = s.n_tok;
    r.n_head = s.n_head;
    r.n_kv_head = s.n_kv_head;
    r.head_dim = d;
    r.a_mem = a_ref.data();
    reference::memory_decompress(r);
    r.a_mem = a_cpu.data();
    cpu::memory_decompress(r, pool());
    auto ca = compare(a_cpu.data(), a_ref.data(), int64_t(a_ref.size()), testing::kMemoryTol);
    EXPECT_TRUE(ca.ok) << "A_mem: " << ca.report;

    const std::vector<float> local = random_floats(q.size(), 6);
    std::vector<float> gate = random_floats(size_t(s.n_tok * s.n_head), 7);
    for (float& g : gate) g = sigmoid(g);
    gate[0] = 0.0f;  // exactly the local output
    std::vector<float> out_ref(q.size()), out_cpu(q.size());
    GateBlendParams b{gate.data(), a_ref.data(), local.data(), out_ref.data(), q_stride, s.n_tok, s.n_head, d};
    reference::gate_blend_forward(b);
    b.out = out_cpu.data();
    cpu::gate_blend_forward(b, pool());
    auto cb = compare(out_cpu.data(), out_ref.data(), int64_t(q.size()), testing::kElementwiseTol);
    EXPECT_TRUE(cb.ok) << cb.report;
    for (int j = 0; j < d; ++j) ASSERT_EQ(out_cpu[size_t(j)], local[size_t(j)]) << "gate 0 must return A_local exactly";
  }
}

// The memory's query projection: the CPU kernel is the reference's arithmetic (bit for bit), over
// padded input rows, and the identity projection returns its input exactly.
TEST_P(MemoryKernelTest, QueryProjectionMatchesReference) {
  const Shape s = GetParam();
  const int d = s.head_dim;
  const int64_t q_dim = int64_t(s.n_head) * d, x_stride = q_dim + 3;
  const std::vector<float> w = random_floats(size_t(s.n_head) * size_t(d) * size_t(d), 8),
                           x = random_floats(size_t(s.n_tok * x_stride), 9);
  std::vector<float> want(size_t(s.n_tok * q_dim)), got(want.size());
  HeadProjectionParams p{w.data(), x.data(), x_stride, want.data(), q_dim, s.n_tok, s.n_head, d};
  reference::head_projection_forward(p);
  p.y = got.data();
  cpu::head_projection_forward(p, pool());
  EXPECT_EQ(got, want);
  std::vector<float> identity(w.size(), 0.0f);
  for (int64_t h = 0; h < s.n_head; ++h) {
    for (int64_t i = 0; i < d; ++i) identity[size_t((h * d + i) * d + i)] = 1.0f;
  }
  p.w = identity.data();
  cpu::head_projection_forward(p, pool());
  for (int64_t t = 0; t < s.n_tok; ++t) {
    for (int64_t i = 0; i < q_dim; ++i) ASSERT_EQ(got[size_t(t * q_dim + i)], x[size_t(t * x_stride + i)]);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, MemoryKernelTest,
                         ::testing::Values(Shape{9, 3, 64, 1}, Shape{9, 3, 64, 33}, Shape{3, 1, 24, 7},
                                           Shape{4, 4, 20, 5}));

TEST(MemoryMath, LinearRuleEqualsNaiveLinearAttention) {
  // With the linear rule, reading the memory is linear attention over every folded token:
  // sum_t (sq . sk_t) v_t / (sum_t sq . sk_t + eps).
  const int d = 16, n_tok = 37;
  const std::vector<float> k = random_floats(size_t(n_tok * d), 11), v = random_floats(size_t(n_tok * d), 12);
  const std::vector<float> q = random_floats(size_t(d), 13);
  std::vector<float> m(d * d), z(d), a(d);
  MemoryCompressParams c{m.data(), z.data(), k.data(), v.data(), d, n_tok, 1, d, false};
  reference::memory_compress(c);
  MemoryDecompressParams r{m.data(), z.data(), q.data(), d, a.data(), 1, 1, 1, d};
  reference::memory_decompress(r);
  std::vector<double> want(size_t(d), 0.0);
  double den = 0;
  for (int t = 0; t < n_tok; ++t) {
    double w = 0;
    for (int i = 0; i < d; ++i) w += double(elu1(q[size_t(i)])) * elu1(k[size_t(t * d + i)]);
    den += w;
    for (int j = 0; j < d; ++j) want[size_t(j)] += w * v[size_t(t * d + j)];
  }
  for (double& x : want) x /= den + kMemoryEps;
  auto cmp = compare(a.data(), want.data(), d, testing::kElementwiseTol);
  EXPECT_TRUE(cmp.ok) << cmp.report;
}

TEST(MemoryMath, DeltaRuleDoesNotStoreAKnownPairTwice) {
  // After (k, v) is stored, retrieving k returns ~v, so the delta rule adds ~nothing for it again.
  const int d = 8;
  const std::vector<float> k = random_floats(size_t(d), 21), v = random_floats(size_t(d), 22);
  std::vector<float> m(d * d), z(d);
  MemoryCompressParams c{m.data(), z.data(), k.data(), v.data(), d, 1, 1, d, true};
  reference::memory_compress(c);
  const std::vector<float> m_once = m;
  reference::memory_compress(c);
  auto cmp = compare(m.data(), m_once.data(), d * d, testing::kMemoryTol);
  EXPECT_TRUE(cmp.ok) << cmp.report;
  // The linear rule, by contrast, doubles it.
  std::vector<float> m2(d * d), z2(d);
  MemoryCompressParams lin{m2.data(), z2.data(), k.data(), v.data(), d, 1, 1, d, false};
  reference::memory_compress(lin);
  reference::memory_compress(lin);
  for (int i = 0; i < d * d; ++i) EXPECT_FLOAT_EQ(m2[size_t(i)], 2 * m_once[size_t(i)]);
}

}  // namespace
}  // namespace edgeinf::kernels
