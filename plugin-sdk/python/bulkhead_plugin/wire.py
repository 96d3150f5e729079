"""Messages as ZeroMQ frames (docs/protocol.md, section 2.1).

The first frame is the MessagePack-RPC array; a bin of ATTACHMENT_MIN_BYTES or more (an image's
pixels) may travel after it as a frame of its own, standing in the array as ext type 1 whose 4
big-endian bytes name its frame. The trainer always takes attachments; it sends them to a host
that says ``"attachments": true`` in its hello, which this SDK does.
"""
import struct

import msgpack

ATTACHMENT_EXT = 1
ATTACHMENT_MIN_BYTES = 4096
MAX_ATTACHMENTS = 64
_BINARY = (bytes, bytearray, memoryview)


def pack(obj):
    """One frame, every bin inline."""
    return msgpack.packb(obj, use_bin_type=True)


def pack_frames(obj):
    """The message as frames: its envelope, then each large bin, not copied."""
    frames = [None]

    def detach(value):
        if isinstance(value, _BINARY) and len(value) >= ATTACHMENT_MIN_BYTES and len(frames) <= MAX_ATTACHMENTS:
            frames.append(value)
            return msgpack.ExtType(ATTACHMENT_EXT, struct.pack(">I", len(frames) - 1))
        if isinstance(value, dict):
            return {key: detach(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [detach(item) for item in value]
        return value

    frames[0] = pack(detach(obj))
    return frames


def unpack_frames(frames):
    """The message in frames (bytes). Raises ValueError naming what is wrong."""
    buffers = list(frames)
    named = set()

    def ext_hook(code, data):
        if code != ATTACHMENT_EXT:
            raise ValueError("MessagePack ext type %d is not used by the protocol" % code)
        if len(data) != 4:
            raise ValueError("an attachment's ext holds 4 bytes (its frame number), not %d" % len(data))
        number = struct.unpack(">I", data)[0]
        if not 0 < number < len(buffers):
            raise ValueError("the message names attachment frame %d but has %d attachments" % (number, len(buffers) - 1))
        if number in named:
            raise ValueError("attachment frame %d is named twice" % number)
        named.add(number)
        return buffers[number]

    if len(buffers) > MAX_ATTACHMENTS + 1:
        raise ValueError("a message has %d attachments, over the limit of %d" % (len(buffers) - 1, MAX_ATTACHMENTS))
    message = msgpack.unpackb(buffers[0], raw=False, strict_map_key=False, ext_hook=ext_hook)
    unnamed = set(range(1, len(buffers))) - named
    if unnamed:
        raise ValueError("attachment frame %d is named nowhere in the message" % min(unnamed))
    return message


def send(sock, obj):
    frames = pack_frames(obj)
    if len(frames) == 1:
        sock.send(frames[0])
    else:
        sock.send_multipart(frames, copy=False)
