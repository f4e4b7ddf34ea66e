// The edgeinf subcommands; each returns the process exit code.
#pragma once

namespace edgeinf::cli {

int run_generate(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_eval(int argc, char** argv);
int run_calibrate(int argc, char** argv);
int run_random_model(int argc, char** argv);

// The model path used when -m is not given: $EDGEINF_MODEL, else the bundled model under models/.
const char* default_model_path();

}  // namespace edgeinf::cli
