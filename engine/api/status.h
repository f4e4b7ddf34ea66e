// How the engine reports errors to a service: absl::Status, with the codes gRPC shares, and the
// EDGEINF_RETURN_IF_ERROR / EDGEINF_ASSIGN_OR_RETURN helpers.
#pragma once

#include "engine/util/status.h"
