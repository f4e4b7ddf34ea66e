// edgeinf: command-line entry point dispatching to the subcommands.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/cli/commands.h"

namespace edgeinf::cli {

const char* default_model_path() {
  const char* env = std::getenv("EDGEINF_MODEL");
  return env != nullptr && *env != '\0' ? env : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace edgeinf::cli

namespace {

void print_usage(FILE* out) {
  std::fputs(
      "usage: edgeinf <command> [options]\n"
      "\n"
      "commands:\n"
      "  generate   stream a completion from a GGUF model\n"
      "  bench      measure prefill and decode tokens/s\n"
      "  eval       compare KV policies on long-context tasks\n"
      "  calibrate  train the EdgeInfinite memory gate of a model\n"
      "  random-model  write a model shaped like another with random weights\n"
      "\n"
      "Run 'edgeinf <command> --help' for the options of a command.\n",
      out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const char* cmd = argv[1];
  if (std::strcmp(cmd, "generate") == 0) return edgeinf::cli::run_generate(argc, argv);
  if (std::strcmp(cmd, "bench") == 0) return edgeinf::cli::run_bench(argc, argv);
  if (std::strcmp(cmd, "eval") == 0) return edgeinf::cli::run_eval(argc, argv);
  if (std::strcmp(cmd, "calibrate") == 0) return edgeinf::cli::run_calibrate(argc, argv);
  if (std::strcmp(cmd, "random-model") == 0) return edgeinf::cli::run_random_model(argc, argv);
  if (std::strcmp(cmd, "-h") == 0 || std::strcmp(cmd, "--help") == 0 || std::strcmp(cmd, "help") == 0) {
    print_usage(stdout);
    return 0;
  }
  std::fprintf(stderr, "edgeinf: unknown command '%s'\n\n", cmd);
  print_usage(stderr);
  return 2;
}
