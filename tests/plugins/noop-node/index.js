'use strict';
// noop-node: the cheapest plugin the JavaScript SDK can host, so that benchmarks see the SDK's cost.
const { BasePlugin } = require('bulkhead-plugin');

class Noop extends BasePlugin {
  on_step_end(kwargs) {}
  transform_caption(caption) { return caption; }
  transform_pil_image(image) { return image; }
}
module.exports = Noop;
