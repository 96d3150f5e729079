'use strict';
// Node SDK tests (node --test): a small trainer peer in JavaScript drives the real host.js over a
// real ZeroMQ socket. Every frame the host sends is validated against schemas/ by the Python
// validator (/usr/bin/python3 -m bulkhead_plugin.schema, python3-jsonschema, draft-07).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { createRequire } = require('module');

const HOME = path.resolve(__dirname, '..', '..', '..');
const SDK = path.join(HOME, 'plugin-sdk', 'node');
const sdkRequire = createRequire(path.join(SDK, 'index.js'));
const zmq = sdkRequire('zeromq');
const msgpack = sdkRequire('@msgpack/msgpack');
const wire = require(path.join(SDK, 'lib', 'wire'));
const { BasePlugin, catalogue } = require(SDK);
const FIXTURES = path.join(HOME, 'tests', 'sdk', 'fixtures', 'node');
const PYTHON = process.env.BULKHEAD_PYTHON || '/usr/bin/python3';

// Like the trainer, admit only connections whose PLAIN password is the token (ZAP, RFC 27): one
// handler for this process's ZeroMQ context, which every Peer's socket shares.
const TOKEN = 'node-token';
let zapHandler = null;
async function checkTokens() {
  if (zapHandler) return;
  zapHandler = new zmq.Reply({ linger: 0 });
  await zapHandler.bind('inproc://zeromq.zap.01');
  (async () => {
    for await (const [version, id, , , , mechanism, user, password] of zapHandler) {
      const ok = String(mechanism) === 'PLAIN' && String(user) === 'bulkhead' && String(password) === TOKEN;
      await zapHandler.send([version, id, ok ? '200' : '400', ok ? 'OK' : 'wrong token', '', '']);
    }
  })().catch(() => {});
}

class Peer {
  constructor(entry, { pluginDir = FIXTURES, parentPid = process.pid, meta = {} } = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bulkhead-node-test-'));
    fs.chmodSync(this.dir, 0o700);
    this.endpoint = `ipc://${path.join(this.dir, 'p.sock')}`;
    this.sock = new zmq.Dealer({ linger: 0, plainServer: true, zapDomain: 'bulkhead' });
    this.frames = []; // [direction, base64]
    this.frameCounts = []; // frames of each message received (attachments: more than 1)
    this.logs = [];
    this.control = [];
    this.stdout = '';
    this.nextId = 1;
    this.entry = path.isAbsolute(entry) ? entry : path.join(pluginDir, entry);
    this.env = {
      ...process.env,
      BULKHEAD_HOME: HOME,
      NODE_PATH: path.join(SDK, 'node_modules'),
      BULKHEAD_ENDPOINT: this.endpoint,
      BULKHEAD_TOKEN: TOKEN,
      BULKHEAD_ENTRY: this.entry,
      BULKHEAD_PLUGIN_DIR: pluginDir,
      BULKHEAD_SEARCH_PATH: HOME,
      BULKHEAD_SCRATCH_DIR: this.dir,
      BULKHEAD_PARENT_PID: String(parentPid),
      BULKHEAD_PLUGIN_NAME: meta.name || 'node-fixture',
      BULKHEAD_PLUGIN_VERSION: meta.version || '1.2.3',
      BULKHEAD_PLUGIN_DESCRIPTION: meta.description || 'a fixture',
    };
  }

  async start(viaShell = false) {
    await checkTokens();
    await this.sock.bind(this.endpoint);
    const argv = [process.execPath, path.join(SDK, 'host.js')];
    const [cmd, args] = viaShell ? ['/bin/sh', ['-c', '"$@" & wait', 'sh', ...argv]] : [argv[0], argv.slice(1)];
    this.proc = spawn(cmd, args, { env: this.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.proc.stdout.on('data', (d) => { this.stdout += d; });
    this.proc.stderr.on('data', () => {});
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    return this;
  }

  // As the trainer sends it: large bins as attachment frames once the hello takes them. The
  // record keeps each message as one frame, every bin inline (what the schemas check).
  send(msg) {
    this.frames.push(`T ${Buffer.from(msgpack.encode(msg)).toString('base64')}`);
    const frames = this.hello && this.hello.attachments === true ? wire.packFrames(msg) : [msgpack.encode(msg)];
    return this.sock.send(frames.length === 1 ? frames[0] : frames);
  }

  async recv(timeoutMs = 10000) {
    this.sock.receiveTimeout = timeoutMs;
    const frames = await this.sock.receive();
    this.frameCounts.push(frames.length);
    const msg = wire.unpackFrames(frames);
    this.frames.push(`P ${Buffer.from(msgpack.encode(msg)).toString('base64')}`);
    if (msg[0] === 2 && msg[1] === 'log') this.logs.push(msg[2]);
    if (msg[0] === 2 && msg[1] === 'control') this.control.push(...msg[2].requests);
    return msg;
  }

  async handshake(options = {}) {
    const hello = await this.recv();
    assert.deepEqual(hello.slice(0, 3), [0, 0, 'hello']);
    this.hello = hello[3];
    await this.send([1, 0, null, { protocol: catalogue.PROTOCOL_VERSION, options, scratch_dir: this.dir }]);
    return hello[3];
  }

  async call(method, params) {
    const id = this.nextId++;
    await this.send([0, id, method, params]);
    for (;;) {
      const m = await this.recv();
      if (m[0] === 1 && m[1] === id) return [m[2], m[3]];
    }
  }

  validate() {
    const r = spawnSync(PYTHON, ['-m', 'bulkhead_plugin.schema'], {
      input: this.frames.join('\n') + '\n',
      env: { ...process.env, PYTHONPATH: path.join(HOME, 'plugin-sdk', 'python'), BULKHEAD_HOME: HOME },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `schema validation failed: ${r.stdout}${r.stderr}`);
  }

  close() {
    try { process.kill(-this.proc.pid, 'SIGKILL'); } catch (e) { /* gone */ }
    this.sock.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function gone(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return ['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]);
  } catch (e) { return true; }
}

async function waitGone(pid, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (gone(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return gone(pid);
}

test('BasePlugin methods are exactly the hooks in hooks.json', () => {
  // A method's hooks (describe_method, ...) have no on_ prefix: any catalogue name counts too.
  const names = catalogue.hookNames();
  const methods = Object.getOwnPropertyNames(BasePlugin.prototype).filter((n) => /^(on_|transform_)/.test(n) || names.includes(n));
  assert.deepEqual(methods.sort(), catalogue.hookNames().sort());
  const raw = JSON.parse(fs.readFileSync(path.join(HOME, 'schemas', 'hooks.json'), 'utf8'));
  assert.deepEqual(catalogue.argUpdateHooks(), Object.keys(raw.hooks).filter((h) => raw.hooks[h].arg_update_callback === true));
});

test('handshake, hooks, control, logging, errors; every message valid', async () => {
  const p = await new Peer('conformance_plugin.js').start();
  try {
    const hello = await p.handshake({ grad_accum: 4 });
    assert.equal(hello.protocol, catalogue.PROTOCOL_VERSION);
    assert.equal(hello.token, 'node-token');
    assert.deepEqual(hello.plugin, { name: 'node-fixture', version: '2.0.0', description: 'a fixture' });
    assert.deepEqual(hello.runtime.name, 'node');
    assert.deepEqual(hello.hooks, ['on_epoch_start', 'on_step_start', 'on_step_end', 'on_epoch_end',
      'on_checkpoint_saved', 'transform_caption', 'transform_pil_image', 'transform_captions', 'transform_pil_images']);
    // The batched transforms by default loop over the per-item ones (docs/protocol.md 3.7).
    assert.deepEqual(await p.call('transform_captions', { captions: ['a', 'b'] }), [null, { captions: ['a|seen', 'b|seen'] }]);

    assert.deepEqual(await p.call('transform_caption', { caption: 'hi' }), [null, { caption: 'hi|seen' }]);
    const data = Uint8Array.from({ length: 2 * 2 * 3 }, (_, i) => i * 10);
    const [err, res] = await p.call('transform_pil_image', { image: { width: 2, height: 2, mode: 'RGB', data } });
    assert.equal(err, null);
    assert.ok(res.image.data instanceof Uint8Array);
    assert.deepEqual(Array.from(res.image.data), Array.from(data, (v) => 255 - v));

    // docs/protocol.md section 2.1: a 256x256 image goes and comes back as an attachment frame, bit-exact.
    assert.equal(hello.attachments, true);
    const big = Uint8Array.from({ length: 256 * 256 * 3 }, (_, i) => (i * 31) & 255);
    const [bigErr, bigRes] = await p.call('transform_pil_image', { image: { width: 256, height: 256, mode: 'RGB', data: big } });
    assert.equal(bigErr, null);
    assert.equal(p.frameCounts[p.frameCounts.length - 1], 2, 'the reply\'s pixels were not an attachment frame');
    assert.ok(Buffer.from(bigRes.image.data).equals(Buffer.from(big.map((v) => 255 - v))));

    const kw = { epoch: 0, global_step: 0, epoch_length: 3, project_name: 'p', log_folder: '/l', data_root: '/d' };
    const [, r1] = await p.call('on_epoch_start', kw);
    assert.deepEqual(r1.control, [{ action: 'set_arg', name: 'grad_accum', value: 4, reason: 'arg_update_callback in on_epoch_start' }]);
    const [, r2] = await p.call('transform_caption', { caption: 'stop' });
    assert.deepEqual(r2, { caption: 'stop|seen', control: [{ action: 'stop', reason: 'asked' }] });

    await p.call('transform_caption', { caption: 'log' });
    assert.deepEqual(p.logs.at(-1), { level: 'info', message: 'logged: log' });

    const [e1, n1] = await p.call('transform_caption', { caption: 'raise' });
    assert.equal(n1, null);
    assert.equal(e1.code, 'hook_failed');
    assert.match(e1.message, /RangeError: boom from plugin/);
    assert.match(e1.traceback, /conformance_plugin\.js/);

    const [e2] = await p.call('no_such_hook', {});
    assert.equal(e2.code, 'unknown_method');

    await p.call('transform_caption', { caption: 'thread' });
    const until = Date.now() + 3000;
    while (p.control.length === 0 && Date.now() < until) {
      try { await p.recv(100); } catch (e) { /* timeout */ }
    }
    assert.deepEqual(p.control, [{ action: 'save_checkpoint', tag: 'late', reason: 'from a thread' }]);

    await p.call('transform_caption', { caption: 'print' });
    await p.send([2, 'shutdown', { reason: 'done' }]);
    assert.equal(await p.exited, 0);
    assert.match(p.stdout, /printed: print/);
    p.validate();
  } finally {
    p.close();
  }
});

for (const [file, needle] of [['bad_not_subclass.js', /does not extend BasePlugin/], ['bad_init.js', /cannot start: no config/],
  ['bad_import.js', /module_that_does_not_exist_anywhere/], ['nothing.js', /not found/]]) {
  test(`loading failure ${file}: log naming the entry, exit 78, no hello`, async () => {
    const p = await new Peer(file).start();
    try {
      const msg = await p.recv();
      assert.deepEqual(msg.slice(0, 2), [2, 'log']);
      assert.equal(msg[2].level, 'error');
      assert.ok(msg[2].message.startsWith(`${p.entry}: `), msg[2].message);
      assert.match(msg[2].message, needle);
      assert.equal(await p.exited, 78);
      p.validate();
    } finally {
      p.close();
    }
  });
}

test('refused handshake exits 1', async () => {
  const p = await new Peer('conformance_plugin.js').start();
  try {
    await p.recv();
    await p.send([1, 0, { code: 'bad_token', message: 'no' }, null]);
    assert.equal(await p.exited, 1);
  } finally {
    p.close();
  }
});

test('exits within about a second when its parent dies, even inside an async hook', async () => {
  const p = await new Peer('conformance_plugin.js').start(true);
  try {
    const hello = await p.handshake();
    await p.send([0, 1, 'transform_caption', { caption: 'sleep:30' }]);
    await new Promise((r) => setTimeout(r, 200));
    process.kill(p.proc.pid, 'SIGKILL');
    const t = Date.now();
    assert.ok(await waitGone(hello.pid, 3000), 'plugin still running');
    assert.ok(Date.now() - t < 1500, `took ${Date.now() - t} ms`);
  } finally {
    p.close();
  }
});

test.after(() => {
  if (zapHandler) zapHandler.close();
});
