#include "text/text_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "paradit/core/status.h"

namespace paradit::text {

std::string read_whole_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) PD_THROW(kNotFound, "tokenizer file not found: ", path);
  if (std::filesystem::is_directory(path, ec)) PD_THROW(kInvalidArgument, path, " is a folder, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) PD_THROW(kIoError, "cannot open ", path, ": ", std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) PD_THROW(kIoError, "cannot read ", path);
  return buf.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

}  // namespace paradit::text
