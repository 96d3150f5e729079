#!/usr/bin/python3
"""transform_pil_image on the bare protocol (docs/protocol.md, section 2.2), as a hostile plugin.

It answers each image with the request's pixels as it reads them after its attack, so the trainer
sees any write that got through. Attacks (option "attack"):
  scribble   write the request memory: a shared writable mapping, mprotect of a read-only one,
             pwrite, the same through /proc/self/fd, ftruncate; and once a reply is sent, go on
             writing its slot: for 100 ms when the next request comes (by then the trainer has
             taken the reply, and a test that sent the next one holds the first)
  elsewhere  point the reply's image into a slot that was not lent with the request
  past_end   point it past the end of the lent slot
As image-hostile-in-message (in-message/plugin.json) it never maps the region and says no
"image_region" in its hello: the trainer must send it every image in the message, as before.
"""
import ctypes
import mmap
import os
import sys
import time

import msgpack
import zmq

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.mmap.restype = ctypes.c_void_p
LIBC.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
LIBC.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def attempts(fd, size):
    """Every way it knows to change the trainer's request memory; the ones that worked."""
    worked = []
    try:
        mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)[0:64] = b"\xee" * 64
        worked.append("writable shared mapping")
    except OSError:
        pass
    address = LIBC.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address not in (None, ctypes.c_void_p(-1).value) and LIBC.mprotect(address, size, mmap.PROT_READ | mmap.PROT_WRITE) == 0:
        ctypes.memset(address, 0xEE, 64)
        worked.append("mprotect")
    for target in (fd, "/proc/self/fd/%d" % fd):
        try:
            other = os.open(target, os.O_RDWR) if isinstance(target, str) else target
            os.pwrite(other, b"\xee" * 64, 0)
            worked.append("pwrite %s" % target)
        except OSError:
            pass
    try:
        os.ftruncate(fd, 0)
        worked.append("ftruncate")
    except OSError:
        pass
    return worked


def main():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.plain_username, sock.plain_password = b"bulkhead", os.environ["BULKHEAD_TOKEN"].encode()
    sock.connect(os.environ["BULKHEAD_ENDPOINT"])
    send = lambda msg: sock.send(msgpack.packb(msg, use_bin_type=True))
    log = lambda text: send([NOTIFICATION, "log", {"level": "warning", "message": text}])
    spec = os.environ.get("BULKHEAD_IMAGE_REGION")
    mapped = spec is not None and not os.environ.get("BULKHEAD_PLUGIN_NAME", "").endswith("in-message")
    requests_fd, replies_fd, slots, slot_bytes = (int(x) for x in spec.split()) if mapped else (-1, -1, 0, 0)
    size = slots * slot_bytes
    requests = mmap.mmap(requests_fd, size, access=mmap.ACCESS_READ) if mapped else None
    replies = mmap.mmap(replies_fd, size) if mapped else None
    hello = {"protocol": 2, "token": os.environ["BULKHEAD_TOKEN"], "hooks": ["transform_pil_image"], "pid": os.getpid(),
             "plugin": {"name": "image-hostile", "version": "1.0.0", "description": "hostile"},
             "runtime": {"name": "python-raw", "version": "%d.%d.%d" % sys.version_info[:3]}, "image_region": mapped}
    send([REQUEST, 0, "hello", hello])
    options = None
    while options is None:
        msg = msgpack.unpackb(sock.recv(), raw=False)
        if msg[0] == RESPONSE and msg[1] == 0:
            options = msg[3]["options"]
    attack = options.get("attack")
    replied = None  # where the last reply's image lies in the replies
    while True:
        msg = msgpack.unpackb(sock.recv(), raw=False)
        if msg[0] == NOTIFICATION and msg[1] == "shutdown":
            return 0
        if msg[0] != REQUEST:
            continue
        _, msg_id, method, params = msg
        if replied is not None:
            start, size = replied
            until = time.monotonic() + 0.1
            while time.monotonic() < until:
                replies[start:start + size] = b"\xee" * size
        image = params["image"]
        if "data" in image:
            send([RESPONSE, msg_id, None, {"image": image}])
            continue
        slot = image.pop("slot")
        if attack == "scribble":
            worked = attempts(requests_fd, size)
            if worked:
                log("wrote the trainer's request memory: " + ", ".join(worked))
        start = slot["index"] * slot_bytes + slot["offset"]
        reply_at = slot["index"] * slot_bytes
        replies[reply_at:reply_at + slot["bytes"]] = requests[start:start + slot["bytes"]]
        image["slot"] = {"index": slot["index"], "offset": 0, "bytes": slot["bytes"]}
        if attack == "elsewhere":
            image["slot"]["index"] = (slot["index"] + 1) % slots
        if attack == "past_end":
            image["slot"]["offset"] = slot_bytes - slot["bytes"] // 2
        send([RESPONSE, msg_id, None, {"image": image}])
        if attack == "scribble":
            replied = (reply_at, slot["bytes"])


if __name__ == "__main__":
    sys.exit(main())
