"""A plugin written against the Python SDK of 2026-11-24: a caption suffix, an image mirrored
left to right, and a count of what it saw, logged at each epoch's end."""
from PIL import ImageOps

from bulkhead_plugin import BasePlugin


class Tagger(BasePlugin):
    name = "python-sdk-v1"

    def configure(self):
        self.suffix = str(self.options.get("suffix", ""))
        self.captions = 0
        self.images = 0

    def transform_caption(self, caption):
        self.captions += 1
        return caption + self.suffix

    def transform_pil_image(self, img):
        self.images += 1
        return ImageOps.mirror(img)

    def on_epoch_end(self, **kwargs):
        self.log("info", "epoch %d: %d captions, %d images" % (kwargs["epoch"], self.captions, self.images))
