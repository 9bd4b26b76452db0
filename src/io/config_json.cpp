#include "paradit/io/config_json.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "paradit/core/status.h"

namespace paradit::io {

namespace fs = std::filesystem;
using nlohmann::json;

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) PD_THROW(kNotFound, "cannot read ", path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string config_text_from_arg(const std::string& arg, std::string* source) {
  const size_t first = arg.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && arg[first] == '{') {
    *source = "the given config JSON";
    return arg;
  }
  fs::path p(arg);
  std::error_code ec;
  if (fs::is_directory(p, ec)) p /= "config.json";
  if (!fs::exists(p, ec)) PD_THROW(kNotFound, "config file ", p.string(), " does not exist");
  *source = p.string();
  return read_text_file(p.string());
}

json parse_config(const std::string& text, const std::string& source, const char* expected_class) {
  json cfg;
  try {
    cfg = json::parse(text);
  } catch (const json::exception& e) {
    PD_THROW(kCorruptData, source, " is not valid JSON: ", e.what());
  }
  if (!cfg.is_object()) PD_THROW(kCorruptData, source, " is not a JSON object");
  if (expected_class && cfg.contains("_class_name")) {
    const json& cls = cfg["_class_name"];
    if (!cls.is_string() || cls.get<std::string>() != expected_class)
      PD_THROW(kInvalidArgument, source, " describes ", cls.dump(), ", not a ", expected_class);
  }
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

bool config_bool(const json& cfg, const char* key, bool fallback, const std::string& source) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  if (!cfg[key].is_boolean())
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", cfg[key].dump(), ", not true/false");
  return cfg[key].get<bool>();
}

std::string config_string(const json& cfg, const char* key, const std::string& fallback, const std::string& source) {
  if (!cfg.contains(key) || cfg[key].is_null()) return fallback;
  if (!cfg[key].is_string())
    PD_THROW(kCorruptData, "key ", key, " in ", source, " holds ", cfg[key].dump(), ", not a string");
  return cfg[key].get<std::string>();
}

}  // namespace paradit::io
