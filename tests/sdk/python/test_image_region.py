"""The Python SDK's side of the image region (docs/protocol.md, section 2.2): pixels read where
they lie, replies written into the lent slot, and an image the plugin keeps given its own copy."""
import os
import unittest

import support  # noqa: F401  (puts the SDK on sys.path)

from bulkhead_plugin import region
from bulkhead_plugin.host import image_from_wire, image_to_wire

SLOT = 1 << 20


class ImageRegionTest(unittest.TestCase):
    def setUp(self):
        fds = [os.memfd_create("requests"), os.memfd_create("replies")]
        for fd in fds:
            os.ftruncate(fd, 2 * SLOT)
            self.addCleanup(os.close, fd)
        self.trainer = region.Region(fds[0], 2, SLOT)  # the trainer's writable view of the requests
        self.addCleanup(setattr, region, "IMAGES", None)
        region.IMAGES = None
        region.attach_image_region({"BULKHEAD_IMAGE_REGION": "%d %d 2 %d" % (fds[0], fds[1], SLOT)})
        region.IMAGES.begin_request()

    def request(self, mode, side, pixels):
        start = SLOT + 128  # slot 1, anywhere in it
        self.trainer.view[start:start + len(pixels)] = pixels
        return {"width": side, "height": side, "mode": mode, "slot": {"index": 1, "offset": 128, "bytes": len(pixels)}}

    def test_images_come_back_bit_exact_through_the_lent_slot(self):
        for mode, channels in (("L", 1), ("RGBA", 4), ("RGB", 3)):
            pixels = os.urandom(32 * 32 * channels)
            region.IMAGES.begin_request()
            wired = image_to_wire(image_from_wire(self.request(mode, 32, pixels)), mode)
            region.IMAGES.end_request()
            self.assertEqual(wired["slot"]["index"], 1, mode)
            self.assertEqual(region.IMAGES.replies.read(wired["slot"]), pixels, mode)

    def test_an_image_the_plugin_keeps_does_not_change_with_the_next_request(self):
        pixels = os.urandom(32 * 32)
        kept = image_from_wire(self.request("L", 32, pixels))
        region.IMAGES.end_request()
        self.request("L", 32, b"\0" * len(pixels))  # the trainer reuses the slot
        self.assertEqual(kept.tobytes(), pixels)

    def test_a_reply_that_does_not_fit_travels_in_the_message(self):
        from PIL import Image
        image_from_wire(self.request("L", 8, bytes(64)))
        wired = image_to_wire(Image.new("RGB", (1024, 1024)), "RGB")  # 3 MB, the slot holds 1
        self.assertIn("data", wired)
        self.assertEqual(len(wired["data"]), 3 * 1024 * 1024)



class ServingWordTest(unittest.TestCase):
    """The serving word (docs/protocol.md, section 2.3): the id of the request being served,
    little-endian, at its start; without BULKHEAD_SERVING nothing is written and nothing fails."""

    def test_the_word_holds_the_id_of_the_request_being_served(self):
        fd = os.memfd_create("serving")
        self.addCleanup(os.close, fd)
        os.ftruncate(fd, 8)
        word = region.ServingWord({"BULKHEAD_SERVING": str(fd)})
        for msg_id in (7, 0xFFFFFFFE):
            word.serving(msg_id)
            self.assertEqual(int.from_bytes(os.pread(fd, 4, 0), "little"), msg_id)
        region.ServingWord({}).serving(9)
        self.assertEqual(int.from_bytes(os.pread(fd, 4, 0), "little"), 0xFFFFFFFE)


if __name__ == "__main__":
    unittest.main()
