"""Colour grading of training images: gamma, saturation, contrast and brightness, with PIL.

Options (1.0 = unchanged): gamma (> 1 brightens mid-tones), saturation, contrast, brightness.
The image keeps its size and mode; an alpha channel passes through untouched.
"""
from PIL import Image, ImageEnhance

from plugins.plugins import BasePlugin


def grade(img, gamma=1.0, saturation=1.0, contrast=1.0, brightness=1.0):
    alpha = None
    if img.mode == "RGBA":
        alpha = img.getchannel("A")
        img = img.convert("RGB")
    if gamma != 1.0:
        lut = [min(255, max(0, int(round(255.0 * ((i / 255.0) ** (1.0 / gamma)))))) for i in range(256)]
        img = img.point(lut * len(img.getbands()))
    if brightness != 1.0:
        img = ImageEnhance.Brightness(img).enhance(brightness)
    if contrast != 1.0:
        img = ImageEnhance.Contrast(img).enhance(contrast)
    if saturation != 1.0 and img.mode == "RGB":
        img = ImageEnhance.Color(img).enhance(saturation)
    if alpha is not None:
        img.putalpha(alpha)
    return img


class ColorGrade(BasePlugin):
    def configure(self):
        o = self.options
        self.gamma = float(o.get("gamma", 1.0))
        self.saturation = float(o.get("saturation", 1.0))
        self.contrast = float(o.get("contrast", 1.0))
        self.brightness = float(o.get("brightness", 1.0))
        if self.gamma <= 0:
            raise ValueError("gamma must be positive")

    def transform_pil_image(self, img: Image.Image) -> Image.Image:
        if not hasattr(self, "gamma"):
            self.configure()
        return grade(img, self.gamma, self.saturation, self.contrast, self.brightness)
