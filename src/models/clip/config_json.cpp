#include "models/clip/config_json.h"

#include "paradit/core/status.h"

namespace paradit::text_encoder {

using nlohmann::json;

json parse_config(const std::string& text, const std::string& source) {
  json cfg;
  try {
    cfg = json::parse(text);
  } catch (const json::exception& e) {
    PD_THROW(kCorruptData, source, " is not valid JSON: ", e.what());
  }
  if (!cfg.is_object()) PD_THROW(kCorruptData, source, " is not a JSON object");
  return cfg;
}

int config_int(const json& cfg, const char* key, int fallback, const std::string& source) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  const json& v = cfg[key];
  if (!v.is_number_integer() || v.get<int64_t>() < -(int64_t(1) << 30) || v.get<int64_t>() > (int64_t(1) << 30))
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(), ", not an integer");
  return v.get<int>();
}

int config_positive_int(const json& cfg, const char* key, int fallback, const std::string& source) {
  const int v = config_int(cfg, key, fallback, source);
  if (v <= 0) PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v, ", not a positive integer");
  return v;
}

float config_positive_float(const json& cfg, const char* key, float fallback, const std::string& source) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  const json& v = cfg[key];
  if (!v.is_number() || !(v.get<double>() > 0))
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", v.dump(), ", not a positive number");
  return float(v.get<double>());
}

std::string config_string(const json& cfg, const char* key, const std::string& fallback, const std::string& source) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  if (!cfg[key].is_string())
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", cfg[key].dump(), ", not a string");
  return cfg[key].get<std::string>();
}

}  // namespace paradit::text_encoder
