// Whole-file reads for the tokenizer loaders, with errors that name the file.
#pragma once

#include <string>

namespace paradit::text {

// Throws kNotFound when the file does not exist, kIoError when it cannot be read.
std::string read_whole_file(const std::string& path);
bool file_exists(const std::string& path);
std::string join_path(const std::string& dir, const std::string& name);

}  // namespace paradit::text
