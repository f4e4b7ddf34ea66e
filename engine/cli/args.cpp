// Option parsing for the CLI: "-x V", "--long V" and "--long=V" forms.
#include "engine/cli/args.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace edgeinf::cli {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void ArgParser::option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
                       const std::string& help, std::function<Status(const std::string&)> set) {
  options_.push_back({short_name, long_name, value_name, help, std::move(set), nullptr});
}

void ArgParser::option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
                       const std::string& help, std::string* dst) {
  option(short_name, long_name, value_name, help, [dst](const std::string& v) {
    *dst = v;
    return absl::OkStatus();
  });
}

void ArgParser::option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
                       const std::string& help, int* dst) {
  option(short_name, long_name, value_name, help, [dst, long_name](const std::string& v) -> Status {
    EDGEINF_ASSIGN_OR_RETURN(*dst, parse_int(long_name, v));
    return absl::OkStatus();
  });
}

void ArgParser::option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
                       const std::string& help, float* dst) {
  option(short_name, long_name, value_name, help, [dst, long_name](const std::string& v) -> Status {
    EDGEINF_ASSIGN_OR_RETURN(*dst, parse_float(long_name, v));
    return absl::OkStatus();
  });
}

void ArgParser::option(const std::string& short_name, const std::string& long_name, const std::string& value_name,
                       const std::string& help, uint64_t* dst) {
  option(short_name, long_name, value_name, help, [dst, long_name](const std::string& v) -> Status {
    EDGEINF_ASSIGN_OR_RETURN(*dst, parse_u64(long_name, v));
    return absl::OkStatus();
  });
}

void ArgParser::flag(const std::string& long_name, const std::string& help, std::function<void()> set) {
  options_.push_back({"", long_name, "", help, nullptr, std::move(set)});
}

std::string ArgParser::usage() const {
  std::string out = absl::StrCat("usage: edgeinf ", command_, " [options]\n", summary_, "\n\noptions:\n");
  for (const Option& o : options_) {
    std::string names = o.short_name.empty() ? "    " : o.short_name + ", ";
    names += o.long_name;
    if (!o.value_name.empty()) names += " " + o.value_name;
    out += absl::StrCat("  ", names, std::string(names.size() < 30 ? 30 - names.size() : 1, ' '), o.help, "\n");
  }
  return out;
}

Status ArgParser::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage().c_str(), stdout);
      return absl::CancelledError("help");
    }
    std::string inline_value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0 && arg.find('=') != std::string::npos) {
      inline_value = arg.substr(arg.find('=') + 1);
      arg = arg.substr(0, arg.find('='));
      has_inline = true;
    }
    const Option* match = nullptr;
    for (const Option& o : options_) {
      if (arg == o.long_name || (!o.short_name.empty() && arg == o.short_name)) match = &o;
    }
    if (match == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option '", arg, "' (see edgeinf ", command_, " --help)"));
    }
    if (match->set_flag) {
      if (has_inline) return absl::InvalidArgumentError(absl::StrCat("option ", arg, " takes no value"));
      match->set_flag();
      continue;
    }
    if (!has_inline) {
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat("option ", arg, " needs a value"));
      inline_value = argv[++i];
    }
    EDGEINF_RETURN_IF_ERROR(match->set(inline_value));
  }
  return absl::OkStatus();
}

StatusOr<int> parse_int(const std::string& name, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0 || x < -2147483647L || x > 2147483647L) {
    return absl::InvalidArgumentError(absl::StrCat(name, " expects an integer, got '", v, "'"));
  }
  return int(x);
}

StatusOr<float> parse_float(const std::string& name, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const float x = std::strtof(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno != 0 || !std::isfinite(x)) {
    return absl::InvalidArgumentError(absl::StrCat(name, " expects a number, got '", v, "'"));
  }
  return x;
}

StatusOr<uint64_t> parse_u64(const std::string& name, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, " expects a non-negative integer, got '", v, "'"));
  }
  return uint64_t(x);
}

int exit_code(const char* command, const Status& status) {
  if (status.ok() || absl::IsCancelled(status)) return 0;
  std::fprintf(stderr, "edgeinf %s: %s\n", command, std::string(status.message()).c_str());
  return absl::IsInvalidArgument(status) ? 2 : 1;
}

}  // namespace edgeinf::cli
