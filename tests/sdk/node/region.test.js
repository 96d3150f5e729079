'use strict';
// The JavaScript SDK's side of the image region (docs/protocol.md, section 2.2): a request image's
// pixels read out of its slot into an array of the plugin's own, the reply's written into the same
// slot of the replies, a reference outside the region refused.
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const { ImageRegion, ServingWord } = require(path.join(__dirname, '..', '..', '..', 'plugin-sdk', 'node', 'lib', 'region.js'));

const SLOT = 1 << 16;

function memory(t, name) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bulkhead-region-')), name);
  const fd = fs.openSync(file, 'w+');
  fs.ftruncateSync(fd, 2 * SLOT);
  t.after(() => { fs.closeSync(fd); fs.rmSync(path.dirname(file), { recursive: true }); });
  return fd;
}

test('pixels come out of the lent slot, and the reply goes into the same slot', (t) => {
  const requests = memory(t, 'requests'), replies = memory(t, 'replies');
  const region = ImageRegion.fromEnvironment({ BULKHEAD_IMAGE_REGION: `${requests} ${replies} 2 ${SLOT}` });
  const pixels = crypto.randomBytes(3000);
  fs.writeSync(requests, pixels, 0, pixels.length, SLOT + 64);
  const got = region.pixels({ index: 1, offset: 64, bytes: pixels.length });
  assert.ok(got instanceof Uint8Array);
  assert.deepStrictEqual(Buffer.from(got), pixels);
  fs.writeSync(requests, Buffer.alloc(pixels.length), 0, pixels.length, SLOT + 64); // the trainer reuses the slot
  assert.deepStrictEqual(Buffer.from(got), pixels, "the plugin's array is its own");
  const where = region.place(got);
  assert.deepStrictEqual(where, { index: 1, offset: 0, bytes: pixels.length });
  const back = Buffer.alloc(pixels.length);
  fs.readSync(replies, back, 0, back.length, SLOT);
  assert.deepStrictEqual(back, pixels);
  assert.strictEqual(region.place(new Uint8Array(SLOT)), null, 'what does not fit travels in the message');
});

test('a slot outside the region is refused, and without a lent slot nothing is placed', (t) => {
  const region = new ImageRegion(memory(t, 'requests'), memory(t, 'replies'), 2, SLOT);
  assert.strictEqual(region.place(new Uint8Array(8)), null);
  assert.throws(() => region.pixels({ index: 2, offset: 0, bytes: 8 }), /outside the region/);
  assert.throws(() => region.pixels({ index: 0, offset: SLOT - 4, bytes: 8 }), /outside the region/);
  assert.strictEqual(ImageRegion.fromEnvironment({ BULKHEAD_IMAGE_REGION: 'nonsense' }), null);
});

// The serving word (docs/protocol.md, section 2.3): the id of the request being served, little-endian,
// at its start; without BULKHEAD_SERVING, nothing is written and nothing fails.
test('the serving word holds the id of the request being served', (t) => {
  const fd = memory(t, 'serving');
  const word = new ServingWord({ BULKHEAD_SERVING: String(fd) });
  const read = () => { const b = Buffer.alloc(4); fs.readSync(fd, b, 0, 4, 0); return b.readUInt32LE(0); };
  word.serving(7);
  assert.strictEqual(read(), 7);
  word.serving(0xfffffffe);
  assert.strictEqual(read(), 0xfffffffe);
  new ServingWord({}).serving(9);
  assert.strictEqual(read(), 0xfffffffe);
});
