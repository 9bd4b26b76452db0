// Prompt encoding as FluxPipeline.encode_prompt does it: CLIP's pooled output and T5's last hidden state.
#include "paradit/core/log.h"
#include "paradit/core/status.h"
#include "pipeline/flux_pipeline_impl.h"

namespace paradit::flux_pipeline {
namespace {

constexpr int kMaxT5Tokens = 512;  // FluxPipeline.check_inputs refuses more

void warn(std::vector<std::string>* warnings, std::string message) {
  PD_LOG(kWarn, message);
  if (warnings) warnings->push_back(std::move(message));
}

}  // namespace

FluxPromptEmbeds Pipeline::encode_prompt(const std::string& prompt, int max_sequence_length,
                                         std::vector<std::string>* warnings) {
  PD_REQUIRE(!random_configs_, model_name(),
             " has no tokenizers: encode token ids (encode_tokens) instead of a prompt");
  PD_REQUIRE(max_sequence_length >= 1 && max_sequence_length <= kMaxT5Tokens,
             "max_sequence_length must be in 1..", kMaxT5Tokens, ", got ", max_sequence_length);
  FluxPromptEmbeds e;
  e.clip_tokens = clip_tokenizer_.encode(prompt);
  e.t5_tokens = t5_tokenizer_.encode(prompt, max_sequence_length);
  // FluxPipeline warns the same way and goes on with the truncated ids.
  if (e.clip_tokens.truncated())
    warn(warnings, detail::concat("prompt truncated for CLIP: it is ", e.clip_tokens.untruncated_length,
                                  " tokens and CLIP reads ", ClipTokenizer::kFluxMaxLength,
                                  " (the pooled embedding ignores the rest)"));
  if (e.t5_tokens.truncated())
    warn(warnings, detail::concat("prompt truncated for T5: it is ", e.t5_tokens.untruncated_length,
                                  " tokens and max_sequence_length is ", max_sequence_length,
                                  "; the rest is ignored", max_sequence_length < kMaxT5Tokens
                                      ? " (raise --max-sequence-length, up to 512)" : ""));
  return run_text_encoders(std::move(e));
}

FluxPromptEmbeds Pipeline::encode_tokens(const std::vector<int32_t>& clip_ids, const std::vector<int32_t>& t5_ids) {
  PD_REQUIRE(!clip_ids.empty() && !t5_ids.empty(), "encode_tokens needs CLIP and T5 token ids");
  PD_REQUIRE(t5_ids.size() <= size_t(kMaxT5Tokens), "at most ", kMaxT5Tokens, " T5 tokens, got ", t5_ids.size());
  FluxPromptEmbeds e;
  e.clip_tokens = {clip_ids, int(clip_ids.size())};
  e.t5_tokens = {t5_ids, int(t5_ids.size())};
  return run_text_encoders(std::move(e));
}

FluxPromptEmbeds Pipeline::encode_request(const FluxRequest& req, bool negative, int max_sequence_length,
                                          std::vector<std::string>* warnings) {
  const std::optional<FluxPromptTokens>& tokens = negative ? req.negative_prompt_tokens : req.prompt_tokens;
  if (tokens) return encode_tokens(tokens->clip, tokens->t5);
  return encode_prompt(negative ? *req.negative_prompt : req.prompt, max_sequence_length, warnings);
}

FluxPromptEmbeds Pipeline::run_text_encoders(FluxPromptEmbeds e) {
  ensure_text_encoders();
  e.pooled = clip_->forward(e.clip_tokens.ids, 1).pooler_output;
  e.prompt_embeds = t5_->forward(e.t5_tokens.ids, 1);
  return e;
}

}  // namespace paradit::flux_pipeline
