// model.hpp — a small text-conditioned rectified-flow generator.
//
// The network predicts the velocity v = image - noise at a point
// x_t = (1 - t) * noise + t * image on the straight line between the two.
// Sampling integrates dx/dt = v from pure noise (t = 0) to an image (t = 1).
//
//   FlowModel model(FlowModelOptions{...});
//   torch::Tensor loss = flow_matching_loss(model, images, tokens, rng);
//   torch::Tensor images = sample_images(model, tokens, 30, 3.0, rng);
//
// A compact UNet: residual blocks at each resolution level, skip connections,
// FiLM conditioning (per-channel scale and shift) from one embedding of the
// timestep plus the caption, and cross-attention from the lowest resolution's
// pixels to the caption's words. The caption is encoded by one small
// transformer layer over word embeddings, so "a red circle on a white
// background" and "a white circle on a red background" differ.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace bulkhead {

struct FlowModelOptions {
  int resolution = 32;
  int channels = 32;
  std::vector<int> channel_mults{1, 2, 2};
  int blocks_per_level = 1;
  int embed_dim = 128;
  std::int64_t vocab_size = 3;
  int max_tokens = 24;
};

// One residual block: norm, SiLU, conv, FiLM from the embedding, norm, SiLU, conv, plus the skip.
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int in_channels, int out_channels, int embed_dim);
  torch::Tensor forward(torch::Tensor x, torch::Tensor embedding);

 private:
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, skip_{nullptr};
  torch::nn::Linear film_{nullptr};
};
TORCH_MODULE(ResBlock);

// An encoded caption: one vector for FiLM, and one per token for cross-attention.
struct EncodedCaption {
  torch::Tensor pooled;   // B x embed_dim
  torch::Tensor tokens;   // max_tokens x B x embed_dim
  torch::Tensor padding;  // B x max_tokens, true where there is no word
};

// Token ids (B x max_tokens) to an EncodedCaption.
class CaptionEncoderImpl : public torch::nn::Module {
 public:
  CaptionEncoderImpl(std::int64_t vocab_size, int max_tokens, int embed_dim);
  EncodedCaption forward(torch::Tensor tokens);
  // One more word embedding per id in copy_from, each starting as a copy of that word's row.
  void add_words(const std::vector<std::int64_t>& copy_from);

 private:
  torch::nn::Embedding words_{nullptr};
  torch::Tensor positions_;
  torch::nn::TransformerEncoderLayer layer_{nullptr};
  torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(CaptionEncoder);

// Every pixel looks up the caption's words: where a shape goes ("top left")
// is a spatial decision that one global FiLM vector made hard to learn.
class CrossAttentionImpl : public torch::nn::Module {
 public:
  CrossAttentionImpl(int channels, int context_dim);
  torch::Tensor forward(torch::Tensor x, const EncodedCaption& caption);

 private:
  torch::nn::GroupNorm norm_{nullptr};
  torch::nn::Conv2d coordinates_{nullptr};  // the query knows where its pixel is
  torch::nn::MultiheadAttention attention_{nullptr};
  torch::nn::Linear out_{nullptr};
};
TORCH_MODULE(CrossAttention);

class FlowModelImpl : public torch::nn::Module {
 public:
  explicit FlowModelImpl(FlowModelOptions options);
  // x: B x 3 x H x W, t: B in [0, 1], tokens: B x max_tokens. Returns the velocity, B x 3 x H x W.
  torch::Tensor forward(torch::Tensor x, torch::Tensor t, torch::Tensor tokens);
  const FlowModelOptions& options() const { return options_; }
  // The caption words' input embedding: row i is token i (the parameter textual inversion trains).
  static constexpr const char* kWordEmbedding = "caption.words.weight";
  // The caption encoder's transformer layers (one TransformerEncoderLayer), as on_model_load tells plugins.
  static constexpr int kCaptionLayers = 1;
  // Grows the vocabulary: new tokens' rows start as copies of the rows of copy_from.
  void add_words(const std::vector<std::int64_t>& copy_from);

 private:
  torch::Tensor timestep_features(const torch::Tensor& t) const;

  FlowModelOptions options_;
  CaptionEncoder caption_{nullptr};
  torch::nn::Sequential time_mlp_{nullptr};
  torch::nn::Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  torch::nn::GroupNorm norm_out_{nullptr};
  torch::nn::ModuleList down_blocks_, downsamples_, up_blocks_, upsamples_;
  ResBlock middle_{nullptr};
  CrossAttention middle_attention_{nullptr};
};
TORCH_MODULE(FlowModel);

// Mean squared error between predicted and true velocity. Timesteps are
// uniform: near t = 0 the model decides the layout (where the shape goes),
// and a small model trained with the usual logit-normal timesteps, which
// rarely visit t < 0.1, ignored positions in captions. Noise and timesteps
// come from rng, on the CPU, so runs do not depend on the device's generator.
// A data-parallel rank passes its rows of the global batch: the noise and timesteps of all
// global_rows are drawn (so every rank's generator stays the same) and rows [first_row, first_row
// + images.size(0)) of them used; together the ranks compute what one process would.
torch::Tensor flow_matching_loss(FlowModel& model, const torch::Tensor& images, const torch::Tensor& tokens,
                                 at::Generator& rng, std::int64_t first_row = 0, std::int64_t global_rows = -1);

// Euler integration with classifier-free guidance:
// v = v(empty) + guidance * (v(caption) - v(empty)). Returns images in [-1, 1].
torch::Tensor sample_images(FlowModel& model, const torch::Tensor& tokens, int steps, double guidance,
                            at::Generator& rng);

// bfloat16 autocast on CUDA for the scope's lifetime (bfloat16 needs no loss
// scaling); does nothing when disabled or on the CPU.
class AutocastScope {
 public:
  explicit AutocastScope(bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

}  // namespace bulkhead
