// T5Config: the published v1.1-XXL encoder config, config.json parsing, and the checks both share.
#include <sstream>

#include "paradit/io/config_json.h"
#include "models/t5/t5_internal.h"
#include "paradit/core/status.h"

namespace paradit {

T5Config T5Config::v1_1_xxl() { return T5Config{}; }

std::string T5Config::summary() const {
  std::ostringstream os;
  os << "T5 encoder with " << num_layers << " layers, " << num_heads << " heads x " << d_kv << ", d_model " << d_model
     << ", d_ff " << d_ff << ", vocab " << vocab_size << ", " << relative_attention_num_buckets << " buckets / "
     << relative_attention_max_distance;
  return os.str();
}

T5Config T5Config::from_json(const std::string& json_text, const std::string& source) {
  using io::config_positive_int;
  const nlohmann::json cfg = io::parse_config(json_text, source);
  const std::string type = io::config_string(cfg, "model_type", "t5", source);
  // mT5 is the same architecture; UMT5 has a position bias per layer and is not this model.
  if (type != "t5" && type != "mt5")
    PD_THROW(kInvalidArgument, source, " describes a ", type, " model, not a T5 encoder (t5)");
  // Defaults are T5Config.__init__'s, which is what transformers uses for an absent key.
  T5Config c;
  c.vocab_size = config_positive_int(cfg, "vocab_size", 32128, source);
  c.d_model = config_positive_int(cfg, "d_model", 512, source);
  c.d_kv = config_positive_int(cfg, "d_kv", 64, source);
  c.d_ff = config_positive_int(cfg, "d_ff", 2048, source);
  c.num_layers = config_positive_int(cfg, "num_layers", 6, source);
  c.num_heads = config_positive_int(cfg, "num_heads", 8, source);
  c.relative_attention_num_buckets = config_positive_int(cfg, "relative_attention_num_buckets", 32, source);
  c.relative_attention_max_distance = config_positive_int(cfg, "relative_attention_max_distance", 128, source);
  c.layer_norm_epsilon = io::config_positive_float(cfg, "layer_norm_epsilon", 1e-6f, source);
  const std::string ff = io::config_string(cfg, "feed_forward_proj", "relu", source);
  if (ff != "gated-gelu")
    PD_THROW(kUnimplemented, source, ": feed_forward_proj \"", ff,
             "\" is not supported (only \"gated-gelu\", T5 v1.1 as FLUX uses it)");
  t5::validate_config(c, source);
  return c;
}

namespace t5 {

void validate_config(const T5Config& c, const std::string& source) {
  if (c.vocab_size <= 0 || c.d_model <= 0 || c.d_kv <= 0 || c.num_heads <= 0 || c.d_ff <= 0 || c.num_layers <= 0 ||
      !(c.layer_norm_epsilon > 0))
    PD_THROW(kInvalidArgument, source, ": a T5 config needs positive sizes, got ", c.summary());
  // Bidirectional buckets: half per direction, half of those exact; the log-spaced rest needs max_distance past them.
  if (c.relative_attention_num_buckets < 4 || c.relative_attention_num_buckets % 2 != 0)
    PD_THROW(kInvalidArgument, source, ": relative_attention_num_buckets ", c.relative_attention_num_buckets,
             " must be even and at least 4");
  if (c.relative_attention_max_distance <= c.relative_attention_num_buckets / 4)
    PD_THROW(kInvalidArgument, source, ": relative_attention_max_distance ", c.relative_attention_max_distance,
             " must exceed the exact range ", c.relative_attention_num_buckets / 4);
}

bool accepts_config(const std::string& json_text) {
  try {
    const nlohmann::json cfg = io::parse_config(json_text, "config.json");
    const std::string type = cfg.value("model_type", std::string());
    return type == "t5" || type == "mt5";
  } catch (const Error&) {
    return false;  // an unreadable config: not this subfolder
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace t5
}  // namespace paradit
