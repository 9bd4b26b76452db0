// Reading the config.json files of diffusers and transformers folders: the text from a path, a folder or the
// JSON itself; typed fields with the library's default for an absent key; errors that name the file and key.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace paradit::io {

// The whole file; throws kNotFound naming it when it cannot be read.
std::string read_text_file(const std::string& path);

// `arg` is a path to a config.json, a folder holding one, or the JSON text itself: returns the JSON text and
// sets *source to what error messages should name.
std::string config_text_from_arg(const std::string& arg, std::string* source);

// The parsed object; throws kCorruptData naming `source` when the text is not a JSON object, and
// kInvalidArgument when `expected_class` is given and the "_class_name" key names another class.
nlohmann::json parse_config(const std::string& text, const std::string& source, const char* expected_class = nullptr);

// cfg[key] when present and not null, else fallback; throws kCorruptData naming the key and source on a wrong
// type or range.
int config_int(const nlohmann::json& cfg, const char* key, int fallback, const std::string& source);
int config_positive_int(const nlohmann::json& cfg, const char* key, int fallback, const std::string& source);
float config_positive_float(const nlohmann::json& cfg, const char* key, float fallback, const std::string& source);
bool config_bool(const nlohmann::json& cfg, const char* key, bool fallback, const std::string& source);
std::string config_string(const nlohmann::json& cfg, const char* key, const std::string& fallback,
                          const std::string& source);

}  // namespace paradit::io
