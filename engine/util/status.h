// Recoverable errors travel as absl::Status; broken invariants abort through EDGEINF_CHECK.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/common/check.h"

namespace edgeinf {

using Status = absl::Status;
template <typename T>
using StatusOr = absl::StatusOr<T>;

}  // namespace edgeinf

// Returns the status from the enclosing function when it is not OK.
#define EDGEINF_RETURN_IF_ERROR(expr)  \
  do {                                 \
    ::absl::Status status_ = (expr);   \
    if (!status_.ok()) return status_; \
  } while (0)

#define EDGEINF_CONCAT_INNER_(a, b) a##b
#define EDGEINF_CONCAT_(a, b) EDGEINF_CONCAT_INNER_(a, b)
// Declares `lhs` from a StatusOr, or returns its status from the enclosing function.
#define EDGEINF_ASSIGN_OR_RETURN(lhs, expr) \
  EDGEINF_ASSIGN_OR_RETURN_IMPL_(EDGEINF_CONCAT_(status_or_, __LINE__), lhs, expr)
#define EDGEINF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()
