// ClipTextConfig: the published CLIP-L text config, config.json parsing, and the checks both share.
#include <sstream>

#include "models/clip/clip_internal.h"
#include "paradit/io/config_json.h"
#include "paradit/core/status.h"
#include "paradit/models/clip_text.h"

namespace paradit {

ClipTextConfig ClipTextConfig::clip_l() { return ClipTextConfig{}; }

std::string ClipTextConfig::summary() const {
  std::ostringstream os;
  os << "CLIP text encoder with " << num_hidden_layers << " layers, " << num_attention_heads << " heads x "
     << (num_attention_heads > 0 ? hidden_size / num_attention_heads : 0) << ", hidden " << hidden_size << ", ffn "
     << intermediate_size << ", vocab " << vocab_size << ", " << max_position_embeddings << " positions, " << hidden_act
     << ", eos " << eos_token_id;
  return os.str();
}

ClipTextConfig ClipTextConfig::from_json(const std::string& json_text, const std::string& source) {
  using io::config_int;
  using io::config_positive_int;
  nlohmann::json cfg = io::parse_config(json_text, source);
  // A full CLIPConfig (openai/clip-vit-large-patch14's config.json) wraps the text tower's config.
  if (cfg.contains("text_config")) {
    if (!cfg["text_config"].is_object())
      PD_THROW(kCorruptData, "key text_config in ", source, " holds ", cfg["text_config"].dump(), ", not an object");
    cfg = nlohmann::json(cfg["text_config"]);
  }
  const std::string type = io::config_string(cfg, "model_type", "clip_text_model", source);
  if (type != "clip_text_model" && type != "clip")
    PD_THROW(kInvalidArgument, source, " describes a ", type, " model, not a CLIP text encoder (clip_text_model)");
  // Defaults are CLIPTextConfig.__init__'s, which is what transformers uses for an absent key.
  ClipTextConfig c;
  c.vocab_size = config_positive_int(cfg, "vocab_size", 49408, source);
  c.hidden_size = config_positive_int(cfg, "hidden_size", 512, source);
  c.intermediate_size = config_positive_int(cfg, "intermediate_size", 2048, source);
  c.num_hidden_layers = config_positive_int(cfg, "num_hidden_layers", 12, source);
  c.num_attention_heads = config_positive_int(cfg, "num_attention_heads", 8, source);
  c.max_position_embeddings = config_positive_int(cfg, "max_position_embeddings", 77, source);
  c.hidden_act = io::config_string(cfg, "hidden_act", "quick_gelu", source);
  c.layer_norm_eps = io::config_positive_float(cfg, "layer_norm_eps", 1e-5f, source);
  c.eos_token_id = config_int(cfg, "eos_token_id", 49407, source);
  clip::validate_config(c, source);
  return c;
}

namespace clip {

void validate_config(const ClipTextConfig& c, const std::string& source) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.max_position_embeddings <= 0 || !(c.layer_norm_eps > 0))
    PD_THROW(kInvalidArgument, source, ": a CLIP text config needs positive sizes, got ", c.summary());
  if (c.hidden_size % c.num_attention_heads != 0)
    PD_THROW(kInvalidArgument, source, ": hidden_size ", c.hidden_size, " is not a multiple of num_attention_heads ",
             c.num_attention_heads);
  if (c.hidden_act == "gelu")
    PD_THROW(kUnimplemented, source,
             ": hidden_act \"gelu\" (exact erf GELU, OpenCLIP bigG) has no backend op yet; "
             "CLIP-L (FLUX) uses quick_gelu");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_pytorch_tanh")
    PD_THROW(kUnimplemented, source, ": hidden_act \"", c.hidden_act,
             "\" is not supported (quick_gelu, gelu_new, gelu_pytorch_tanh are)");
}

bool accepts_config(const std::string& json_text) {
  try {
    const nlohmann::json cfg = io::parse_config(json_text, "config.json");
    const std::string type = cfg.value("model_type", std::string());
    return type == "clip_text_model" || type == "clip";
  } catch (const Error&) {
    return false;  // an unreadable config: not this subfolder
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

}  // namespace clip
}  // namespace paradit
