// Pieces of the T5 encoder shared by its config, weight loading, position bias and forward; the bias functions are
// also what tests check against transformers' tables.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "paradit/backend/backend.h"
#include "paradit/models/t5_encoder.h"

namespace paradit::t5 {

// Throws kInvalidArgument naming `source` when the model cannot run with this config.
void validate_config(const T5Config& c, const std::string& source);
// Whether a config.json (its text) describes a T5 (a pipeline root's subfolder is picked by it).
bool accepts_config(const std::string& json_text);

// T5Attention._relative_position_bucket(relative_position, bidirectional=True, num_buckets, max_distance) for one
// relative position (key − query), with the same float32 arithmetic as torch, so that positions on a bucket's edge
// fall on the same side.
int relative_position_bucket(int64_t relative_position, int num_buckets, int max_distance);

// Layer 0's position bias for a sequence of S tokens: host f32 [H, S, S] with bias[h, i, j] = table[bucket(j − i), h].
// table: relative_attention_bias.weight, host [num_buckets, H], any dtype paradit reads.
Tensor position_bias(const Tensor& table, int64_t S, int num_buckets, int max_distance);

struct LayerWeights {
  Tensor attn_norm;   // [D]
  Tensor qkv;         // [3·inner, D]: rows q; k; v, fused at load so one GEMM makes all three
  Tensor o;           // [D, inner]
  Tensor ff_norm;     // [D]
  Tensor wi_0, wi_1;  // [F, D]: gelu_new(wi_0·x) ⊙ (wi_1·x)
  Tensor wo;          // [D, F]
};

struct T5Weights {
  Tensor embedding;  // [vocab, D]
  std::vector<LayerWeights> layers;
  Tensor final_norm;  // [D]
  Tensor bias_table;  // host f32 [num_buckets, H]: the position bias is made on the host
  size_t bytes = 0;   // on the device
};

struct LoadedT5 {
  T5Config config;
  T5Weights weights;
};

// Finds, checks and uploads the weights at `path` (see T5Encoder::load).
LoadedT5 load_t5(Backend& backend, const std::string& path, const std::string& config_json);
// Random weights of config `c` (see T5Encoder::random).
T5Weights random_weights(Backend& backend, const T5Config& c, uint64_t seed);

}  // namespace paradit::t5
