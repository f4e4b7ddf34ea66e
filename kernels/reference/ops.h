// Scalar model ops: the specification of the CPU and CUDA kernels of the same names.
#pragma once

#include "kernels/common/op_params.h"

namespace edgeinf::kernels::reference {

void matmul_forward(const MatmulParams& p);
void rmsnorm_forward(const RmsNormParams& p);
void rope_forward(const RopeParams& p);
void attention_forward(const AttentionParams& p);
void swiglu_forward(const SwigluParams& p);

}  // namespace edgeinf::kernels::reference
