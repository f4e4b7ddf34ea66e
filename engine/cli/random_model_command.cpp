// `edgeinf random-model`: a model with the metadata (architecture, tokenizer, chat template), the
// tensor names, shapes and types of another, and random weights: what speed is measured on where
// the real model cannot go (speed does not depend on the weights' values). --header-only writes
// the description alone (a small GGUF with no tensors and the tensor table as metadata), from
// which a later call makes the random model, on a machine that has only the description.
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/cli/args.h"
#include "engine/cli/commands.h"
#include "engine/model/gguf.h"
#include "engine/model/gguf_writer.h"
#include "kernels/common/quant_blocks.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/reference/dequantize.h"

namespace edgeinf::cli {
namespace {

// The tensor table of a description: one "name:type:ne0,ne1,..." per tensor.
constexpr const char* kTensorsKey = "edgeinf.random_model.tensors";

struct TensorSpec {
  std::string name;
  uint32_t type = 0;
  std::vector<int64_t> ne;
};

// Copies one metadata value (integers keep their width where the writer has it, else widen; the
// reader keeps every integer but a u64 in v.i).
void copy_kv(GgufWriter& w, const GgufKv& kv) {
  const GgufValue& v = kv.value;
  switch (v.type) {
    case GgufType::kUint8:
    case GgufType::kUint16:
    case GgufType::kUint32: w.kv_u32(kv.key, uint32_t(v.i)); return;
    case GgufType::kInt8:
    case GgufType::kInt16:
    case GgufType::kInt32: w.kv_i32(kv.key, int32_t(v.i)); return;
    case GgufType::kUint64: w.kv_u64(kv.key, v.u); return;
    case GgufType::kInt64: w.kv_u64(kv.key, uint64_t(v.i)); return;
    case GgufType::kFloat32: w.kv_f32(kv.key, float(v.f)); return;
    case GgufType::kFloat64: w.kv_f64(kv.key, v.f); return;
    case GgufType::kBool: w.kv_bool(kv.key, v.i != 0); return;
    case GgufType::kString: w.kv_str(kv.key, v.str); return;
    case GgufType::kArray: break;
  }
  if (v.elem_type == GgufType::kString) {
    w.kv_str_array(kv.key, v.strings);
  } else if (v.elem_type == GgufType::kFloat32 || v.elem_type == GgufType::kFloat64) {
    w.kv_f32_array(kv.key, std::vector<float>(v.floats.begin(), v.floats.end()));
  } else {
    w.kv_i32_array(kv.key, std::vector<int32_t>(v.ints.begin(), v.ints.end()));
  }
}

StatusOr<std::vector<TensorSpec>> specs_of(const GgufFile& f) {
  std::vector<TensorSpec> out;
  if (const GgufValue* table = f.find(kTensorsKey); table != nullptr) {
    for (const std::string& line : table->strings) {
      std::vector<std::string> parts = absl::StrSplit(line, ':');
      TensorSpec t;
      if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &t.type)) {
        return absl::InvalidArgumentError(absl::StrCat("bad tensor description '", line, "'"));
      }
      t.name = parts[0];
      for (absl::string_view d : absl::StrSplit(parts[2], ',')) {
        int64_t n = 0;
        if (!absl::SimpleAtoi(d, &n) || n <= 0) {
          return absl::InvalidArgumentError(absl::StrCat("bad tensor description '", line, "'"));
        }
        t.ne.push_back(n);
      }
      out.push_back(std::move(t));
    }
    return out;
  }
  for (const GgufTensorInfo& info : f.tensors()) {
    TensorSpec t{info.name, info.type, {}};
    for (uint32_t d = 0; d < info.n_dims; ++d) t.ne.push_back(info.ne[d]);
    out.push_back(std::move(t));
  }
  return out;
}

// Random rows of a tensor encoded in its type: N(1, 0.1) for norm weights and other vectors,
// N(0, 1) for the embeddings, N(0, 0.05) for matrices. Rows in parallel, one seed per row.
StatusOr<std::vector<uint8_t>> random_tensor(const TensorSpec& t, uint64_t seed, kernels::cpu::ThreadPool& pool) {
  const auto type = kernels::WeightType(t.type);
  const int64_t n_in = t.ne[0];
  int64_t rows = 1;
  for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
  const kernels::WeightTypeTraits* traits = kernels::weight_type_traits(t.type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(t.name, ": weight type ", t.type, " is not supported"));
  }
  if (n_in % traits->block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat(t.name, ": rows of ", n_in, " values do not fill whole blocks"));
  }
  const bool vector = t.ne.size() == 1;
  const float mean = vector ? 1.0f : 0.0f;
  const float stddev = vector ? 0.1f : (t.name == "token_embd.weight" ? 1.0f : 0.05f);
  const int64_t row_bytes = int64_t(kernels::row_bytes(type, n_in));
  std::vector<uint8_t> data(size_t(row_bytes * rows));
  pool.run(rows, [&](int64_t r) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(r));
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> row(static_cast<size_t>(n_in));
    for (float& x : row) x = dist(rng);
    kernels::reference::quantize_row(type, row.data(), data.data() + r * row_bytes, n_in);
  });
  return data;
}

Status run(int argc, char** argv) {
  std::string like, out;
  bool header_only = false;
  uint64_t seed = 1;
  int threads = 0;
  ArgParser p("random-model",
              "Writes a model shaped like another (metadata, tensor names, shapes and types) with random weights, "
              "or with --header-only its description alone.");
  p.option("", "--like", "FILE", "a GGUF model, or a description written by --header-only", &like);
  p.option("-o", "--output", "FILE", "where to write", &out);
  p.option("", "--seed", "N", "random seed (default 1)", &seed);
  p.option("-t", "--threads", "N", "threads (default: all cores)", &threads);
  p.flag("--header-only", "write the description (metadata and tensor table, no weights)", [&] { header_only = true; });
  EDGEINF_RETURN_IF_ERROR(p.parse(argc, argv, 2));
  if (like.empty() || out.empty()) return absl::InvalidArgumentError("--like and -o are required");
  EDGEINF_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> src, GgufFile::open(like));
  EDGEINF_ASSIGN_OR_RETURN(std::vector<TensorSpec> specs, specs_of(*src));
  GgufWriter w;
  for (const GgufKv& kv : src->metadata()) {
    if (kv.key != kTensorsKey) copy_kv(w, kv);
  }
  int64_t bytes = 0;
  if (header_only) {
    std::vector<std::string> table;
    for (const TensorSpec& t : specs) table.push_back(absl::StrCat(t.name, ":", t.type, ":", absl::StrJoin(t.ne, ",")));
    w.kv_str_array(kTensorsKey, table);
  } else {
    kernels::cpu::ThreadPool pool(threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency())));
    for (size_t i = 0; i < specs.size(); ++i) {
      EDGEINF_ASSIGN_OR_RETURN(std::vector<uint8_t> data, random_tensor(specs[i], seed + i, pool));
      bytes += int64_t(data.size());
      w.tensor(specs[i].name, specs[i].ne, specs[i].type, std::move(data));
    }
  }
  EDGEINF_RETURN_IF_ERROR(w.write_file(out));
  std::fprintf(stderr, "random-model: wrote %s: %zu tensors%s (%.1f MiB of weights), metadata of %s\n", out.c_str(),
               specs.size(), header_only ? " described" : "", double(bytes) / (1 << 20), like.c_str());
  return absl::OkStatus();
}

}  // namespace

int run_random_model(int argc, char** argv) { return exit_code("random-model", run(argc, argv)); }

}  // namespace edgeinf::cli
