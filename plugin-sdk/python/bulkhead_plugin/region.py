"""The shared memory the trainer hands a host: model access's tensors (docs/protocol.md, section
9.4), images' pixels (section 2.2) and the serving word (section 2.3).

Slot i of a region is bytes [i * slot_bytes, (i + 1) * slot_bytes). Slots change owner only by
message: one is lent with a request and is the trainer's again with its reply.
"""
import mmap
import os
import struct
import sys

IMAGE_ALIGNMENT = 64  # where each image of a reply starts in its slot (a cache line)
MAPPED_MODES = ("L", "RGBA")  # PIL's Image.frombuffer shares their bytes (its _MAPMODES); RGB's it unpacks


class Region:
    """One memfd of the region, mapped shared; read-only when the trainer sealed it against writes."""

    def __init__(self, fd, slots, slot_bytes, writable=True):
        self.fd, self.slots, self.slot_bytes = fd, slots, slot_bytes
        # ACCESS_READ (PROT_READ, shared): its views are read-only too, as PIL's decoders want them.
        self.map = mmap.mmap(fd, slots * slot_bytes, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
        self.view = memoryview(self.map)
        self.lent = None  # the slot lent with the request being answered
        self.cursor = 0   # where the next value written goes in it

    def begin(self, lent=None):
        self.lent, self.cursor = lent, 0

    def bytes_at(self, slot):
        """A view of the bytes a {index, offset, bytes} reference names (no copy)."""
        index, offset, size = slot["index"], slot["offset"], slot["bytes"]
        if not 0 <= index < self.slots or offset < 0 or size < 0 or offset + size > self.slot_bytes:
            raise ValueError("slot %r is outside the region (%d slots of %d bytes)" % (slot, self.slots, self.slot_bytes))
        start = index * self.slot_bytes + offset
        return self.view[start:start + size]

    def read(self, slot):
        return bytes(self.bytes_at(slot))

    def reserve(self, size, alignment=1):
        """The next `size` bytes of the lent slot: (their reference, a view to fill), or None when
        they do not fit."""
        if self.lent is None:
            raise RuntimeError("no region slot is lent with this request (it came without tensors)")
        at = -(-self.cursor // alignment) * alignment
        if at + size > self.slot_bytes:
            return None
        start = self.lent * self.slot_bytes + at
        self.cursor = at + size
        return {"index": self.lent, "offset": at, "bytes": size}, self.view[start:start + size]

    def write(self, data, alignment=1):
        """Copies data into the lent slot after what is there already; returns its reference."""
        reserved = self.reserve(len(data), alignment)
        if reserved is None:
            raise ValueError("%d bytes do not fit in the slot (%d left)" % (len(data), self.slot_bytes - self.cursor))
        reserved[1][:] = data
        return reserved[0]


class ImageRegion:
    """BULKHEAD_IMAGE_REGION: "<requests fd> <replies fd> <slots> <slot_bytes>". A request's images
    lie in a slot of the first (read-only here), its reply's go into the same slot of the second."""

    def __init__(self, requests_fd, replies_fd, slots, slot_bytes):
        self.requests = Region(requests_fd, slots, slot_bytes, writable=False)
        self.replies = Region(replies_fd, slots, slot_bytes)
        self.mapped = []  # images of this request whose pixels are the region's own bytes

    def begin_request(self):
        self.replies.begin()
        self.mapped = []

    def pixels(self, slot):
        """A request image's bytes, where they lie; its slot is where the reply's images go."""
        if self.replies.lent is None:
            self.replies.lent = slot["index"]
        elif slot["index"] != self.replies.lent:
            raise ValueError("images of one request lie in slots %d and %d" % (self.replies.lent, slot["index"]))
        return self.requests.bytes_at(slot)

    def place(self, img):
        """A reply image's pixels into the lent slot: its reference, or None (no slot lent, or full).
        L and RGBA go straight in (PIL pastes into a view of the slot); RGB, which PIL keeps as 4
        bytes a pixel, through tobytes()."""
        if self.replies.lent is None:
            return None
        size = img.width * img.height * len(img.getbands())
        reserved = self.replies.reserve(size, IMAGE_ALIGNMENT)
        if reserved is None:
            return None
        where, view = reserved
        if img.mode in MAPPED_MODES:
            from PIL import Image
            img.load()
            Image.frombuffer(img.mode, img.size, view, "raw", img.mode, 0, 1).im.paste(img.im, (0, 0) + img.size)
        else:
            view[:] = img.tobytes()
        return where

    def end_request(self):
        """A mapped image the plugin kept (a previous frame, a cache) gets pixels of its own: the
        trainer writes the next request into this slot."""
        for image in self.mapped:
            if sys.getrefcount(image) > 3:  # this list, the loop, the call's argument: nobody else
                image._ensure_mutable()  # PIL's own copy-on-write
        self.mapped = []


IMAGES = None


def attach_image_region(environ=os.environ):
    """Maps the image region the trainer handed over, if any (the host does this at start)."""
    global IMAGES
    spec = environ.get("BULKHEAD_IMAGE_REGION")
    if spec and IMAGES is None:
        try:
            IMAGES = ImageRegion(*(int(x) for x in spec.split()))
        except (ValueError, OSError, TypeError):
            IMAGES = None  # the hello then says so, and pixels travel in the message
    return IMAGES


class ServingWord:
    """BULKHEAD_SERVING: the id of the request being served goes there before it is served, so that
    a crash is blamed on the request that caused it (replies sent before may die with the process)."""

    def __init__(self, environ=os.environ):
        self.word = None
        spec = environ.get("BULKHEAD_SERVING")
        if spec:
            try:
                self.word = mmap.mmap(int(spec), 8)
            except (ValueError, OSError):
                self.word = None  # the trainer then blames the oldest request left

    def serving(self, msg_id):
        if self.word is not None:
            struct.pack_into("<I", self.word, 0, msg_id & 0xFFFFFFFF)
