// transform_hooks.hpp — a transform hook and its batched form, as schemas/hooks.json pairs them.
//
//   const auto& captions = TransformHooks::of("transform_caption");
//   captions.batch_hook   // "transform_captions": its "batch_of" is "transform_caption"
//   captions.item_key     // "caption": what the per-item hook's params and result carry
//   captions.batch_key    // "captions": the list the batched hook's params and result carry
//
// Nothing here is written by hand: the names and keys are read from the catalogue, so a new pair
// in hooks.json needs no code to be batched.
#pragma once

#include <string>

namespace bulkhead {

struct TransformHooks {
  std::string item_hook, batch_hook;
  std::string item_key, batch_key;

  // The pair of a per-item transform hook; throws std::logic_error when hooks.json has none.
  static const TransformHooks& of(const std::string& item_hook);
  // True for a hook that is some transform's batched form (hooks.json "batch_of").
  static bool is_batch_hook(const std::string& hook);
};

}  // namespace bulkhead
