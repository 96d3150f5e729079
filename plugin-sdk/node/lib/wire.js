'use strict';
// Messages as ZeroMQ frames (docs/protocol.md, section 2.1).
//
// The first frame is the MessagePack-RPC array; a bin of ATTACHMENT_MIN_BYTES or more (an image's
// pixels) may travel after it as a frame of its own, standing in the array as ext type 1 whose 4
// big-endian bytes name its frame. The trainer always takes attachments; it sends them to a host
// that says `attachments: true` in its hello, which this SDK does.
const msgpack = require('@msgpack/msgpack');

// -0 is a safe integer to @msgpack/msgpack, which writes it as the integer 0: a state's -0 must
// come back as -0, so it goes as a float64 (every other number as the library writes it).
class Encoder extends msgpack.Encoder {
  encodeNumber(value) {
    if (Object.is(value, -0)) this.encodeNumberAsFloat(value);
    else super.encodeNumber(value);
  }
}
const encoder = new Encoder();

const ATTACHMENT_EXT = 1;
const ATTACHMENT_MIN_BYTES = 4096;
const MAX_ATTACHMENTS = 64;

function frameNumber(n) {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, n);
  return bytes;
}

// The message as frames: its envelope, then each large bin, not copied.
function packFrames(obj) {
  const frames = [null];
  const detach = (value) => {
    if (value instanceof Uint8Array) {
      if (value.length < ATTACHMENT_MIN_BYTES || frames.length > MAX_ATTACHMENTS) return value;
      frames.push(value);
      return new msgpack.ExtData(ATTACHMENT_EXT, frameNumber(frames.length - 1));
    }
    if (Array.isArray(value)) return value.map(detach);
    if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      const out = {};
      for (const [key, item] of Object.entries(value)) out[key] = detach(item);
      return out;
    }
    return value;
  };
  frames[0] = encoder.encode(detach(obj));
  return frames;
}

// The message in frames (Buffers); each attachment is a view of its frame. Throws naming what is wrong.
function unpackFrames(frames) {
  if (frames.length > MAX_ATTACHMENTS + 1) {
    throw new Error(`a message has ${frames.length - 1} attachments, over the limit of ${MAX_ATTACHMENTS}`);
  }
  const named = new Set();
  const codec = new msgpack.ExtensionCodec();
  codec.register({
    type: ATTACHMENT_EXT,
    encode: () => null,
    decode: (data) => {
      if (data.length !== 4) throw new Error(`an attachment's ext holds 4 bytes (its frame number), not ${data.length}`);
      const n = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
      if (n === 0 || n >= frames.length) throw new Error(`the message names attachment frame ${n} but has ${frames.length - 1} attachments`);
      if (named.has(n)) throw new Error(`attachment frame ${n} is named twice`);
      named.add(n);
      const f = frames[n];
      return new Uint8Array(f.buffer, f.byteOffset, f.length);
    },
  });
  const message = msgpack.decode(frames[0], { extensionCodec: codec });
  for (let n = 1; n < frames.length; n++) {
    if (!named.has(n)) throw new Error(`attachment frame ${n} is named nowhere in the message`);
  }
  return message;
}

module.exports = { ATTACHMENT_EXT, ATTACHMENT_MIN_BYTES, MAX_ATTACHMENTS, packFrames, unpackFrames };
