"""noop-python: the cheapest plugin the Python SDK can host, so that benchmarks see the SDK's cost."""
from bulkhead_plugin import BasePlugin


class Noop(BasePlugin):
    def on_step_end(self, **kwargs):
        pass

    def transform_caption(self, caption):
        return caption

    def transform_pil_image(self, img):
        return img
