"""The Python SDK's framing (docs/protocol.md, section 2.1): large bins travel as attachment frames,
and a message that names its frames wrongly is refused, saying how."""
import struct
import unittest

import msgpack

import support  # noqa: F401  (puts the SDK on sys.path)
from bulkhead_plugin import wire


def ref(number, ext_type=1):
    return msgpack.ExtType(ext_type, struct.pack(">I", number))


class Framing(unittest.TestCase):
    def test_large_bins_become_frames_and_come_back(self):
        pixels = bytes(range(256)) * 64
        message = [1, 7, None, {"image": {"width": 64, "height": 64, "mode": "RGB", "data": pixels}, "small": b"abc"}]
        frames = wire.pack_frames(message)
        self.assertEqual(len(frames), 2)
        self.assertIs(frames[1], pixels, "the pixels were copied on the way out")
        self.assertLess(len(frames[0]), 100)
        self.assertEqual(wire.unpack_frames(frames), message)
        self.assertEqual(len(wire.pack_frames([1, 1, None, {"data": b"x" * 100}])), 1, "a small bin stays inline")

    def test_frames_named_wrongly_are_refused(self):
        def reply(value, *attachments):
            return [wire.pack([1, 1, None, value])] + list(attachments)

        cases = [
            (reply({"data": ref(1)}), "names attachment frame 1 but has 0 attachments"),
            (reply({"data": ref(1)}, b"a", b"b"), "attachment frame 2 is named nowhere"),
            (reply({"a": ref(1), "b": ref(1)}, b"a"), "attachment frame 1 is named twice"),
            (reply({"data": ref(1, 7)}, b"a"), "ext type 7 is not used"),
            (reply(None, *([b"x"] * 65)), "65 attachments, over the limit of 64"),
        ]
        for frames, message in cases:
            with self.assertRaises(ValueError) as caught:
                wire.unpack_frames(frames)
            self.assertIn(message, str(caught.exception))


if __name__ == "__main__":
    unittest.main()
