'use strict';
// The image region the trainer hands a host (docs/protocol.md, section 2.2): BULKHEAD_IMAGE_REGION
// = "<requests fd> <replies fd> <slots> <slot_bytes>". A request's images lie in a slot of the
// first (sealed against the plugin's writes), its reply's go into the same slot of the second.
// Node has no mmap without a native addon: pixels are read with pread and written with pwrite, one
// copy each way, and the plugin gets a Uint8Array of its own (nothing the trainer reuses).
const fs = require('fs');

const IMAGE_ALIGNMENT = 64; // where each image of a reply starts in its slot (a cache line)

class ImageRegion {
  constructor(requestsFd, repliesFd, slots, slotBytes) {
    Object.assign(this, { requestsFd, repliesFd, slots, slotBytes });
    // Both must be usable: the requests readable, the replies writable (a zero-byte probe each).
    fs.readSync(requestsFd, Buffer.alloc(1), 0, 1, 0);
    fs.writeSync(repliesFd, Buffer.alloc(0), 0, 0, 0);
    this.beginRequest();
  }

  static fromEnvironment(env = process.env) {
    const spec = env.BULKHEAD_IMAGE_REGION;
    if (!spec) return null;
    const numbers = spec.trim().split(/\s+/).map(Number);
    if (numbers.length !== 4 || !numbers.every(Number.isInteger)) return null;
    try {
      return new ImageRegion(...numbers);
    } catch (e) {
      return null; // the hello then says so, and pixels travel in the message
    }
  }

  beginRequest() {
    this.lent = null;
    this.cursor = 0;
  }

  // A request image's bytes, copied out of its slot; that slot is where the reply's images go.
  pixels(slot) {
    const { index, offset, bytes } = slot || {};
    if (![index, offset, bytes].every((n) => Number.isInteger(n) && n >= 0) || index >= this.slots || offset + bytes > this.slotBytes) {
      throw new Error(`slot ${JSON.stringify(slot)} is outside the region (${this.slots} slots of ${this.slotBytes} bytes)`);
    }
    if (this.lent === null) this.lent = index;
    else if (index !== this.lent) throw new Error(`images of one request lie in slots ${this.lent} and ${index}`);
    const data = Buffer.allocUnsafe(bytes);
    for (let done = 0; done < bytes;) {
      const n = fs.readSync(this.requestsFd, data, done, bytes - done, index * this.slotBytes + offset + done);
      if (n === 0) throw new Error('the image region ended early');
      done += n;
    }
    return new Uint8Array(data.buffer, data.byteOffset, bytes);
  }

  // A reply image's bytes into the lent slot: its reference, or null (no slot lent, or full).
  place(data) {
    if (this.lent === null) return null;
    const at = Math.ceil(this.cursor / IMAGE_ALIGNMENT) * IMAGE_ALIGNMENT;
    if (at + data.length > this.slotBytes) return null;
    for (let done = 0; done < data.length;) {
      done += fs.writeSync(this.repliesFd, data, done, data.length - done, this.lent * this.slotBytes + at + done);
    }
    this.cursor = at + data.length;
    return { index: this.lent, offset: at, bytes: data.length };
  }
}

// BULKHEAD_SERVING = "<fd>" (docs/protocol.md, section 2.3): the id of the request being served
// goes there before it is served (pwrite), so that a crash is blamed on the request that caused it.
class ServingWord {
  constructor(env = process.env) {
    const fd = Number(env.BULKHEAD_SERVING || NaN);
    this.fd = Number.isInteger(fd) && fd >= 0 ? fd : null;
    this.bytes = Buffer.alloc(4);
  }

  serving(id) {
    if (this.fd === null) return;
    this.bytes.writeUInt32LE(id >>> 0, 0);
    try {
      fs.writeSync(this.fd, this.bytes, 0, 4, 0);
    } catch (e) {
      this.fd = null; // not writable: the trainer then blames the oldest request left
    }
  }
}

module.exports = { ImageRegion, ServingWord };
