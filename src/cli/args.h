// A small command-line parser: --long/-s options bound to variables, with usage text and clear errors.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace paradit::cli {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}

  void flag(const std::string& name, const std::string& short_name, bool* out, const std::string& help);
  void option(const std::string& name, const std::string& short_name, std::string* out, const std::string& help);
  void option(const std::string& name, const std::string& short_name, int* out, const std::string& help);
  void option(const std::string& name, const std::string& short_name, float* out, const std::string& help);
  // A comma-separated list of integers ("1024,2048").
  void option(const std::string& name, const std::string& short_name, std::vector<int>* out, const std::string& help);

  // Parses argv[first..argc); throws Error(kInvalidArgument) on an unknown option, a missing or malformed value.
  // Returns false when --help was given (usage() should be printed).
  bool parse(int argc, char** argv, int first);
  std::string usage() const;

 private:
  struct Opt {
    std::string name, short_name, help, default_text;
    bool takes_value;
    std::function<void(const std::string&)> set;
  };
  void add(Opt opt);
  std::string command_, summary_;
  std::vector<Opt> opts_;
};

}  // namespace paradit::cli
