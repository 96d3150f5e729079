#include "train/model.hpp"

#include <ATen/autocast_mode.h>
#include <cmath>

#include "train/vocab.hpp"

namespace bulkhead {
namespace nn = torch::nn;
namespace {

constexpr int kGroups = 8;  // channel counts are multiples of 8 (the schema's multipleOf)

nn::Conv2d conv3x3(int in, int out, int stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

// Two channels holding each pixel's x and y in [-1, 1].
torch::Tensor coordinate_grid(const torch::Tensor& like) {
  const auto batch = like.size(0), height = like.size(2), width = like.size(3);
  auto ys = torch::linspace(-1, 1, height, like.options()).view({1, 1, height, 1}).expand({batch, 1, height, width});
  auto xs = torch::linspace(-1, 1, width, like.options()).view({1, 1, 1, width}).expand({batch, 1, height, width});
  return torch::cat({xs, ys}, 1);
}

}  // namespace

ResBlockImpl::ResBlockImpl(int in_channels, int out_channels, int embed_dim)
    : norm1_(register_module("norm1", nn::GroupNorm(kGroups, in_channels))),
      norm2_(register_module("norm2", nn::GroupNorm(kGroups, out_channels))),
      conv1_(register_module("conv1", conv3x3(in_channels, out_channels))),
      conv2_(register_module("conv2", conv3x3(out_channels, out_channels))),
      film_(register_module("film", nn::Linear(embed_dim, 2 * out_channels))) {
  if (in_channels != out_channels)
    skip_ = register_module("skip", nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1)));
}

torch::Tensor ResBlockImpl::forward(torch::Tensor x, torch::Tensor embedding) {
  auto h = conv1_(torch::silu(norm1_(x)));
  auto scale_shift = film_(embedding).unsqueeze(-1).unsqueeze(-1).chunk(2, 1);
  h = norm2_(h) * (1 + scale_shift[0]) + scale_shift[1];
  h = conv2_(torch::silu(h));
  return h + (skip_ ? skip_(x) : x);
}

CaptionEncoderImpl::CaptionEncoderImpl(std::int64_t vocab_size, int max_tokens, int embed_dim)
    : words_(register_module("words", nn::Embedding(vocab_size, embed_dim))),
      positions_(register_parameter("positions", torch::randn({max_tokens, embed_dim}) * 0.02)),
      layer_(register_module("layer", nn::TransformerEncoderLayer(nn::TransformerEncoderLayerOptions(embed_dim, 4)
                                                                     .dim_feedforward(2 * embed_dim)
                                                                     .dropout(0.0)))),
      out_(register_module("out", nn::Linear(embed_dim, embed_dim))) {}

EncodedCaption CaptionEncoderImpl::forward(torch::Tensor tokens) {
  auto x = (words_(tokens) + positions_).transpose(0, 1);  // L x B x D, as the layer wants
  auto padding = tokens.eq(Vocabulary::kPad);              // the start token is never padding
  auto encoded = layer_->forward(x, /*src_mask=*/torch::Tensor(), padding);
  // The mean over the caption's tokens gives every word a direct path to the
  // result. (Reading only the start token, training learned to attend to the
  // colour words and dropped "top left".)
  auto keep = padding.logical_not().transpose(0, 1).unsqueeze(-1).to(encoded.dtype());  // L x B x 1
  return {out_((encoded * keep).sum(0) / keep.sum(0)), encoded, padding};
}

void CaptionEncoderImpl::add_words(const std::vector<std::int64_t>& copy_from) {
  torch::NoGradGuard no_grad;
  const torch::Tensor old = words_->weight;
  const auto index = torch::tensor(copy_from, torch::kLong).to(old.device());
  const torch::Tensor grown = torch::cat({old, old.index_select(0, index)});
  nn::Embedding replacement(nn::EmbeddingOptions(grown.size(0), grown.size(1)));
  replacement->to(old.device());
  replacement->weight.copy_(grown);
  words_ = replace_module("words", replacement);
}

CrossAttentionImpl::CrossAttentionImpl(int channels, int context_dim)
    : norm_(register_module("norm", nn::GroupNorm(kGroups, channels))),
      coordinates_(register_module("coordinates", nn::Conv2d(nn::Conv2dOptions(2, channels, 1)))),
      attention_(register_module("attention", nn::MultiheadAttention(nn::MultiheadAttentionOptions(channels, 4)
                                                                          .kdim(context_dim)
                                                                          .vdim(context_dim)))),
      out_(register_module("out", nn::Linear(channels, channels))) {
  // Starts as the identity: the block adds nothing until training finds a use for it.
  torch::NoGradGuard no_grad;
  out_->weight.zero_();
  out_->bias.zero_();
}

torch::Tensor CrossAttentionImpl::forward(torch::Tensor x, const EncodedCaption& caption) {
  const auto batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  auto query = (norm_(x) + coordinates_(coordinate_grid(x))).flatten(2).permute({2, 0, 1});  // HW x B x C
  auto attended = std::get<0>(attention_(query, caption.tokens, caption.tokens, caption.padding));
  return x + out_(attended).permute({1, 2, 0}).reshape({batch, channels, height, width});
}

FlowModelImpl::FlowModelImpl(FlowModelOptions options) : options_(std::move(options)) {
  const int d = options_.embed_dim;
  const int levels = static_cast<int>(options_.channel_mults.size());
  auto width = [&](int level) { return options_.channels * options_.channel_mults[level]; };

  caption_ = register_module("caption", CaptionEncoder(options_.vocab_size, options_.max_tokens, d));
  time_mlp_ = register_module("time_mlp", nn::Sequential(nn::Linear(d, d), nn::SiLU(), nn::Linear(d, d)));
  // Two extra input channels carry x and y coordinates: positions named in
  // captions ("top left") are easy to find.
  conv_in_ = register_module("conv_in", conv3x3(3 + 2, width(0)));

  int current = width(0);
  for (int level = 0; level < levels; ++level) {
    for (int b = 0; b < options_.blocks_per_level; ++b) {
      down_blocks_->push_back(ResBlock(current, width(level), d));
      current = width(level);
    }
    if (level + 1 < levels) downsamples_->push_back(conv3x3(current, current, 2));
  }
  middle_ = register_module("middle", ResBlock(current, current, d));
  middle_attention_ = register_module("middle_attention", CrossAttention(current, d));
  for (int level = levels - 1; level >= 0; --level) {
    if (level + 1 < levels) upsamples_->push_back(conv3x3(current, current));
    for (int b = 0; b < options_.blocks_per_level; ++b) {
      int skip = b == 0 ? width(level) : 0;  // the level's skip joins its first up block
      up_blocks_->push_back(ResBlock(current + skip, width(level), d));
      current = width(level);
    }
  }
  register_module("down_blocks", down_blocks_);
  register_module("downsamples", downsamples_);
  register_module("up_blocks", up_blocks_);
  register_module("upsamples", upsamples_);
  norm_out_ = register_module("norm_out", nn::GroupNorm(kGroups, current));
  conv_out_ = register_module("conv_out", conv3x3(current, 3));
  // Start by predicting zero velocity: training begins from a calm output.
  torch::NoGradGuard no_grad;
  conv_out_->weight.zero_();
  conv_out_->bias.zero_();
}

void FlowModelImpl::add_words(const std::vector<std::int64_t>& copy_from) {
  caption_->add_words(copy_from);
  options_.vocab_size += static_cast<std::int64_t>(copy_from.size());
}

torch::Tensor FlowModelImpl::timestep_features(const torch::Tensor& t) const {
  const int half = options_.embed_dim / 2;
  auto frequencies = torch::exp(torch::arange(half, t.options()) * (-std::log(10000.0) / half));
  auto angles = (t * 1000).unsqueeze(1) * frequencies.unsqueeze(0);
  return torch::cat({torch::sin(angles), torch::cos(angles)}, 1);
}

torch::Tensor FlowModelImpl::forward(torch::Tensor x, torch::Tensor t, torch::Tensor tokens) {
  const int levels = static_cast<int>(options_.channel_mults.size());
  auto caption = caption_(tokens);
  auto embedding = torch::silu(time_mlp_->forward(timestep_features(t)) + caption.pooled);

  auto h = conv_in_(torch::cat({x, coordinate_grid(x)}, 1));
  std::vector<torch::Tensor> skips;
  std::size_t block = 0;
  for (int level = 0; level < levels; ++level) {
    for (int b = 0; b < options_.blocks_per_level; ++b) h = down_blocks_[block++]->as<ResBlock>()->forward(h, embedding);
    skips.push_back(h);
    if (level + 1 < levels) h = downsamples_[level]->as<nn::Conv2d>()->forward(h);
  }
  h = middle_attention_(middle_(h, embedding), caption);
  block = 0;
  std::size_t upsample = 0;
  for (int level = levels - 1; level >= 0; --level) {
    if (level + 1 < levels) {
      h = torch::nn::functional::interpolate(
          h, torch::nn::functional::InterpolateFuncOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest));
      h = upsamples_[upsample++]->as<nn::Conv2d>()->forward(h);
    }
    h = torch::cat({h, skips[level]}, 1);
    for (int b = 0; b < options_.blocks_per_level; ++b) h = up_blocks_[block++]->as<ResBlock>()->forward(h, embedding);
  }
  return conv_out_(torch::silu(norm_out_(h)));
}

torch::Tensor flow_matching_loss(FlowModel& model, const torch::Tensor& images, const torch::Tensor& tokens,
                                 at::Generator& rng, std::int64_t first_row, std::int64_t global_rows) {
  const auto cpu = torch::TensorOptions().dtype(torch::kFloat32);
  const std::int64_t rows = images.size(0);
  auto shape = images.sizes().vec();
  shape[0] = global_rows < 0 ? rows : global_rows;
  auto noise = torch::randn(shape, rng, cpu).narrow(0, first_row, rows).to(images.device());
  auto t = torch::rand({shape[0]}, rng, cpu).narrow(0, first_row, rows).to(images.device());
  if (rows == 0) return torch::zeros({}, cpu);  // a rank with no rows of a short last batch: noise drawn, nothing to learn
  auto tt = t.view({-1, 1, 1, 1});
  auto x_t = (1 - tt) * noise + tt * images;
  auto velocity = model(x_t, t, tokens);
  return torch::mse_loss(velocity.to(torch::kFloat32), images - noise);
}

torch::Tensor sample_images(FlowModel& model, const torch::Tensor& tokens, int steps, double guidance,
                            at::Generator& rng) {
  torch::NoGradGuard no_grad;
  const auto& o = model->options();
  const auto batch = tokens.size(0);
  const auto device = tokens.device();
  auto x = torch::randn({batch, 3, o.resolution, o.resolution}, rng, torch::kFloat32).to(device);
  auto empty = torch::full_like(tokens, Vocabulary::kPad);
  empty.select(1, 0).fill_(Vocabulary::kStart);
  auto both_tokens = torch::cat({tokens, empty});
  const double dt = 1.0 / steps;
  for (int i = 0; i < steps; ++i) {
    auto t = torch::full({2 * batch}, i * dt, x.options());
    auto v = model(torch::cat({x, x}), t, both_tokens).to(torch::kFloat32).chunk(2);
    x = x + (v[1] + guidance * (v[0] - v[1])) * dt;
  }
  return x.clamp(-1, 1);
}

AutocastScope::AutocastScope(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  at::autocast::set_enabled(true);
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  at::autocast::set_enabled(false);
  at::autocast::clear_cache();
}

}  // namespace bulkhead
