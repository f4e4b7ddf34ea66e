// A small command-line parser for the edgeinf subcommands: typed options with help text.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/util/status.h"

namespace edgeinf::cli {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  // Registers an option taking a value ("-m", "--model"); `set` parses it or returns an error.
  void option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
              const std::string& help, std::function<Status(const std::string&)> set);
  // Typed options that store into *dst.
  void option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
              const std::string& help, std::string* dst);
  void option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
              const std::string& help, int* dst);
  void option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
              const std::string& help, float* dst);
  void option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
              const std::string& help, uint64_t* dst);
  // Registers a flag without value.
  void flag(const std::string& long_name, const std::string& help, std::function<void()> set);

  // Parses argv[first..]; `--help` returns a Cancelled status after printing usage to stdout.
  Status parse(int argc, char** argv, int first);
  std::string usage() const;

 private:
  struct Option {
    std::string short_name, long_name, value_name, help;
    std::function<Status(const std::string&)> set;
    std::function<void()> set_flag;
  };
  std::string command_, summary_;
  std::vector<Option> options_;
};

// Value parsers that report the option name on failure.
StatusOr<int> parse_int(const std::string& name, const std::string& v);
StatusOr<float> parse_float(const std::string& name, const std::string& v);
StatusOr<uint64_t> parse_u64(const std::string& name, const std::string& v);

// The exit code of a subcommand: 0 on success or --help, 2 for bad arguments, 1 otherwise;
// errors are printed as "edgeinf COMMAND: message".
int exit_code(const char* command, const Status& status);

}  // namespace edgeinf::cli
