// Reading a transformers config.json: typed fields with transformers' defaults for absent keys, and errors that
// name the file and the key. Shared by the CLIP and T5 configs.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace paradit::text_encoder {

// The parsed object; throws kCorruptData naming `source` when the text is not a JSON object.
nlohmann::json parse_config(const std::string& text, const std::string& source);

// cfg[key] when present, else fallback; throws kCorruptData naming the key and source on a wrong type or range.
int config_positive_int(const nlohmann::json& cfg, const char* key, int fallback, const std::string& source);
int config_int(const nlohmann::json& cfg, const char* key, int fallback, const std::string& source);
float config_positive_float(const nlohmann::json& cfg, const char* key, float fallback, const std::string& source);
std::string config_string(const nlohmann::json& cfg, const char* key, const std::string& fallback,
                          const std::string& source);

}  // namespace paradit::text_encoder
