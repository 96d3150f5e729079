#!/usr/bin/env node
'use strict';
// The JavaScript plugin host: `node <home>/plugin-sdk/node/host.js`.
//
// bulkhead-plugin-host sets up the jail and execs this with the environment described in
// docs/protocol.md. It connects to the trainer, loads the plugin class exported by the file
// BULKHEAD_ENTRY names, says hello, then serves hook requests one at a time, in arrival order,
// until the trainer says shutdown or goes away.
//
// Exit status: 0 after shutdown; 1 when the trainer refuses the handshake (or never answers it)
// or the trainer is gone; 78 when the plugin cannot be loaded (after a log notification naming why).
const path = require('path');
const Module = require('module');

const EXIT_OK = 0;
const EXIT_REFUSED = 1;
const EXIT_LOAD_FAILED = 78;
const REQUEST = 0, RESPONSE = 1, NOTIFICATION = 2;
const CHANNELS = { RGB: 3, RGBA: 4, L: 1 };
const WELCOME_TIMEOUT_MS = Number(process.env.BULKHEAD_WELCOME_TIMEOUT_S || 30) * 1000;
const PARENT_POLL_MS = 200;

// `require('bulkhead-plugin')` from a plugin file resolves to this SDK (the same module instance).
const SDK_INDEX = path.join(__dirname, 'index.js');
const originalResolve = Module._resolveFilename;
Module._resolveFilename = function resolve(request, ...rest) {
  if (request === 'bulkhead-plugin') return SDK_INDEX;
  return originalResolve.call(this, request, ...rest);
};

let zmq, wire, ImageRegion, ServingWord;
try {
  zmq = require('zeromq');
  wire = require('./lib/wire');
  ({ ImageRegion, ServingWord } = require('./lib/region'));
} catch (e) {
  process.stderr.write(`bulkhead host.js: cannot load zeromq/@msgpack/msgpack (run scripts/install-node-deps.sh): ${e.message}\n`);
  process.exit(EXIT_REFUSED);
}
const { BasePlugin, makeSetArg, plainDataProblem, catalogue } = require(SDK_INDEX);


class HookError extends Error {
  constructor(code, message, traceback) {
    super(message);
    this.code = code;
    this.traceback = traceback;
  }
}

// ---- outgoing messages: one send at a time, in order ------------------------------------------
class Outbox {
  constructor(sock) {
    this.sock = sock;
    this.tail = Promise.resolve();
  }
  send(msg) {
    const frames = wire.packFrames(msg);
    const out = frames.length === 1 ? frames[0] : frames;
    this.tail = this.tail.then(() => this.sock.send(out)).catch((e) => {
      process.stderr.write(`bulkhead host.js: send failed: ${e.message}\n`);
    });
    return this.tail;
  }
  flushed() { return this.tail; }
}

class Sink {
  constructor(outbox) {
    this.outbox = outbox;
    this.pending = null; // control requests of the hook being served
  }
  log(level, message) { this.outbox.send([NOTIFICATION, 'log', { level, message }]); }
  control(request) {
    if (this.pending) this.pending.push(request);
    else this.outbox.send([NOTIFICATION, 'control', { requests: [request] }]);
  }
}

// ---- parent watch -------------------------------------------------------------------------------
function parentAlive(parentPid, firstPpid) {
  if (process.ppid !== firstPpid) return false;
  if (parentPid) {
    try { process.kill(parentPid, 0); } catch (e) { if (e.code === 'ESRCH') return false; }
  }
  return true;
}

function startParentWatch() {
  const parentPid = Number.parseInt(process.env.BULKHEAD_PARENT_PID || '0', 10) || 0;
  const firstPpid = process.ppid;
  if (!parentAlive(parentPid, firstPpid)) process.exit(EXIT_REFUSED);
  setInterval(() => {
    if (!parentAlive(parentPid, firstPpid)) {
      process.stderr.write('bulkhead: the trainer is gone; exiting\n');
      process.exit(EXIT_REFUSED);
    }
  }, PARENT_POLL_MS);
}

// ---- loading --------------------------------------------------------------------------------------
function loadPluginClass(entry) {
  if (!entry) throw new Error('BULKHEAD_ENTRY is empty (a .js file exporting the plugin class)');
  const pluginDir = process.env.BULKHEAD_PLUGIN_DIR || '';
  const file = path.isAbsolute(entry) ? entry : path.resolve(pluginDir || process.cwd(), entry);
  let exported;
  try {
    exported = require(file);
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).startsWith(`Cannot find module '${file}'`)) {
      throw Object.assign(new Error(`module ${file} not found`), { pluginStack: '' });
    }
    throw Object.assign(new Error(`loading ${file} failed: ${e && e.name}: ${e && e.message}`), { pluginStack: e && e.stack });
  }
  const Cls = exported && typeof exported === 'object' && typeof exported.default === 'function' ? exported.default : exported;
  if (typeof Cls !== 'function') {
    throw new Error(`${file} does not export a class (module.exports = class extends BasePlugin {...})`);
  }
  if (!(Cls.prototype instanceof BasePlugin)) {
    throw new Error(`${Cls.name || 'the exported class'} is not a valid plugin: it does not extend BasePlugin (const { BasePlugin } = require('bulkhead-plugin'))`);
  }
  return Cls;
}

// ---- images -----------------------------------------------------------------------------------------
// The host's image region (docs/protocol.md, section 2.2), or null: pixels travel in the message.
let images = null;

function imageFromWire(obj) {
  if (!obj || typeof obj !== 'object') throw new HookError('bad_params', 'image must be a map with width, height, mode, data');
  const { width, height, mode } = obj;
  let { data } = obj;
  if (data === undefined && 'slot' in obj && images) {
    try {
      data = images.pixels(obj.slot);
    } catch (e) {
      throw new HookError('bad_params', `image slot: ${e.message}`);
    }
  }
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new HookError('bad_params', 'image width and height must be positive integers');
  }
  if (!(mode in CHANNELS)) throw new HookError('bad_params', `image mode must be RGB, RGBA or L, not ${mode}`);
  if (!(data instanceof Uint8Array)) throw new HookError('bad_params', 'image data must be MessagePack bin');
  const need = width * height * CHANNELS[mode];
  if (data.length !== need) throw new HookError('bad_params', `image data has ${data.length} bytes; ${width}x${height} ${mode} needs ${need}`);
  return { width, height, mode, data };
}

function imageToWire(img) {
  if (!img || typeof img !== 'object') throw new TypeError('transform_pil_image must return {width, height, mode, data}');
  let { width, height, mode, data } = img;
  if (Array.isArray(data)) data = Uint8Array.from(data);
  else if (data instanceof ArrayBuffer) data = new Uint8Array(data);
  else if (ArrayBuffer.isView(data) && !(data instanceof Uint8Array)) data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (!(data instanceof Uint8Array)) throw new TypeError('image data must be a Uint8Array');
  if (!(mode in CHANNELS)) throw new TypeError(`image mode must be RGB, RGBA or L, not ${mode}`);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new TypeError('image width and height must be positive integers');
  if (data.length !== width * height * CHANNELS[mode]) throw new TypeError(`image data has ${data.length} bytes; ${width}x${height} ${mode} needs ${width * height * CHANNELS[mode]}`);
  const slot = images ? images.place(data) : null;
  return slot ? { width, height, mode, slot } : { width, height, mode, data };
}

// A batched transform's return: a list of one item per item sent.
function batchResult(method, out, count) {
  if (!Array.isArray(out)) throw new HookError('hook_failed', `${method} returned ${typeof out}, not an array`);
  if (out.length !== count) throw new HookError('hook_failed', `${method} returned ${out.length} items for ${count}`);
  return out;
}

// ---- the session ----------------------------------------------------------------------------------
class Session {
  constructor(sock, outbox, sink, plugin) {
    Object.assign(this, { sock, outbox, sink, plugin });
    this.hooks = new Set(catalogue.hookNames());
    this.argUpdateHooks = new Set(catalogue.argUpdateHooks());
    this.modelHooks = new Set(catalogue.modelHooks());
  }

  async guarded(fn) {
    try {
      return await fn();
    } catch (e) {
      const message = e instanceof Error ? `${e.name}: ${e.message}` : `thrown: ${String(e)}`;
      throw new HookError('hook_failed', message, e instanceof Error ? String(e.stack) : undefined);
    }
  }

  async callHook(method, params) {
    if (params === null || params === undefined) params = {};
    if (typeof params !== 'object' || Array.isArray(params) || params instanceof Uint8Array) {
      throw new HookError('bad_params', `params of ${method} must be a map`);
    }
    const p = this.plugin;
    if (method === 'transform_caption') {
      if (typeof params.caption !== 'string') throw new HookError('bad_params', 'transform_caption needs params {caption: str}');
      const out = await this.guarded(() => p.transform_caption(params.caption));
      if (typeof out !== 'string') throw new HookError('hook_failed', `transform_caption returned ${typeof out}, not a string`);
      return { caption: out };
    }
    if (method === 'transform_captions') {
      const captions = params.captions;
      if (!Array.isArray(captions) || !captions.every((c) => typeof c === 'string')) {
        throw new HookError('bad_params', 'transform_captions needs params {captions: [str]}');
      }
      // A wrong item is left for the trainer to judge: it refuses that item alone.
      return { captions: batchResult(method, await this.guarded(() => p.transform_captions(captions)), captions.length) };
    }
    if (method === 'transform_pil_images') {
      if (!Array.isArray(params.images)) throw new HookError('bad_params', 'transform_pil_images needs params {images: [image]}');
      const imgs = params.images.map(imageFromWire);
      const out = batchResult(method, await this.guarded(() => p.transform_pil_images(imgs)), imgs.length);
      try {
        return { images: out.map(imageToWire) };
      } catch (e) {
        throw new HookError('hook_failed', `${e.name}: ${e.message}`, String(e.stack));
      }
    }
    if (method === 'get_state') {
      const state = await this.guarded(() => p.get_state(params));
      const problem = plainDataProblem(state, 'state');
      if (problem) throw new HookError('hook_failed', `get_state returned ${problem}`);
      return { state };
    }
    if (method === 'set_state') {
      if (!('state' in params)) throw new HookError('bad_params', 'set_state needs params {state, global_step}');
      await this.guarded(() => p.set_state(params.state));
      return null;
    }
    if (method === 'transform_pil_image') {
      const img = imageFromWire(params.image);
      const out = await this.guarded(() => p.transform_pil_image(img));
      try {
        return { image: imageToWire(out) };
      } catch (e) {
        throw new HookError('hook_failed', `${e.name}: ${e.message}`, String(e.stack));
      }
    }
    const kwargs = { ...params };
    if (this.modelHooks.has(method)) {
      const out = await this.guarded(() => p[method](kwargs)); // the reply itself
      if (out !== null && out !== undefined && (typeof out !== 'object' || Array.isArray(out))) {
        throw new HookError('hook_failed', `${method} returned ${typeof out}, not an object or null`);
      }
      return out === undefined ? null : out;
    }
    if (this.argUpdateHooks.has(method)) {
      const sink = this.sink;
      kwargs.arg_update_callback = (arg, newValue) => sink.control(makeSetArg(arg, newValue, `arg_update_callback in ${method}`));
    }
    const out = await this.guarded(() => p[method](kwargs));
    // A method's answer (hooks.json: returns_value); null or undefined is nil, what a plugin that
    // does not implement the hook answers.
    if (catalogue.hook(method).returns_value && out !== null && out !== undefined) {
      if (typeof out !== 'object' || Array.isArray(out)) throw new HookError('hook_failed', `${method} returned ${typeof out}, not an object`);
      return out;
    }
    return null; // observers' return values are ignored
  }

  async handleRequest(id, method, params) {
    if (typeof method !== 'string' || !this.hooks.has(method)) {
      return [RESPONSE, id, { code: 'unknown_method', message: `unknown method ${JSON.stringify(method)}` }, null];
    }
    this.sink.pending = [];
    if (images) images.beginRequest();
    try {
      let result = await this.callHook(method, params);
      const control = this.sink.pending;
      if (control.length) result = { ...(result || {}), control };
      return [RESPONSE, id, null, result];
    } catch (e) {
      const control = this.sink.pending || [];
      this.sink.pending = null;
      for (const req of control) this.sink.control(req); // requests made before the failure still count
      if (e instanceof HookError) {
        const err = { code: e.code, message: e.message };
        if (e.traceback) err.traceback = e.traceback;
        return [RESPONSE, id, err, null];
      }
      return [RESPONSE, id, { code: 'internal', message: String(e && e.message), traceback: String(e && e.stack) }, null];
    } finally {
      this.sink.pending = null;
    }
  }

  async serve() {
    const serving = new ServingWord();
    for (;;) {
      const frames = await this.sock.receive();
      let msg;
      try {
        msg = wire.unpackFrames(frames);
      } catch (e) {
        this.sink.log('warning', `bulkhead: dropped a malformed message: ${e.message}`);
        continue;
      }
      if (!Array.isArray(msg) || msg.length === 0) {
        this.sink.log('warning', 'bulkhead: dropped a message that is not a MessagePack-RPC array');
        continue;
      }
      if (msg[0] === REQUEST && msg.length === 4 && Number.isInteger(msg[1])) {
        serving.serving(msg[1]);
        const reply = await this.handleRequest(msg[1], msg[2], msg[3]);
        await this.outbox.send(reply);
      } else if (msg[0] === NOTIFICATION && msg.length === 3) {
        if (msg[1] === 'shutdown') return EXIT_OK;
        // other trainer notifications are ignored in protocol v1
      } else {
        this.sink.log('warning', `bulkhead: dropped an unexpected message of type ${JSON.stringify(msg[0])}`);
      }
    }
  }
}

async function closeAndExit(sock, outbox, code, lingerMs) {
  try {
    await outbox.flushed();
    sock.linger = lingerMs;
    if (lingerMs > 0) await new Promise((r) => setTimeout(r, Math.min(lingerMs, 100)));
    sock.close();
  } catch (e) { /* exiting anyway */ }
  process.exit(code);
}

async function receiveWelcome(sock) {
  const deadline = Date.now() + WELCOME_TIMEOUT_MS;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return { timeout: true };
    sock.receiveTimeout = left;
    let frames;
    try {
      frames = await sock.receive();
    } catch (e) {
      if (e.code === 'EAGAIN') return { timeout: true };
      throw e;
    }
    let msg;
    try { msg = wire.unpackFrames(frames); } catch (e) { continue; }
    if (!Array.isArray(msg)) continue;
    if (msg.length === 3 && msg[0] === NOTIFICATION && msg[1] === 'shutdown') return { shutdown: true };
    if (msg.length === 4 && msg[0] === RESPONSE && msg[1] === 0) return { error: msg[2], result: msg[3] };
  }
}

async function main() {
  const endpoint = process.env.BULKHEAD_ENDPOINT;
  const token = process.env.BULKHEAD_TOKEN || '';
  const entry = process.env.BULKHEAD_ENTRY || '';
  if (!endpoint) {
    process.stderr.write('bulkhead host.js: BULKHEAD_ENDPOINT is not set; this program is started by the trainer\n');
    process.exit(EXIT_REFUSED);
  }
  startParentWatch();

  // Every connection is authenticated (docs/protocol.md, section 2): the token is the password.
  const sock = new zmq.Dealer(token ? { linger: 0, plainUsername: 'bulkhead', plainPassword: token } : { linger: 0 });
  sock.connect(endpoint);
  const outbox = new Outbox(sock);
  const sink = new Sink(outbox);

  // 1. load
  let plugin, hooks, meta;
  try {
    const Cls = loadPluginClass(entry);
    try {
      plugin = new Cls();
    } catch (e) {
      throw Object.assign(new Error(`new ${Cls.name}() threw ${e && e.name}: ${e && e.message}`), { pluginStack: e && e.stack });
    }
    hooks = Cls.implementedHooks();
    meta = Cls.pluginMeta();
  } catch (e) {
    const message = `${entry}: ${e.message}${e.pluginStack ? '\n' + e.pluginStack : ''}`;
    process.stderr.write(message + '\n');
    outbox.send([NOTIFICATION, 'log', { level: 'error', message }]);
    await closeAndExit(sock, outbox, EXIT_LOAD_FAILED, 2000);
    return;
  }
  plugin._bulkheadSink = sink;

  images = ImageRegion.fromEnvironment();

  // 2. hello; 3. welcome
  outbox.send([REQUEST, 0, 'hello', {
    protocol: catalogue.PROTOCOL_VERSION,
    token,
    plugin: meta,
    hooks,
    runtime: { name: 'node', version: process.versions.node },
    pid: process.pid,
    attachments: true,
    image_region: images !== null,
  }]);
  const w = await receiveWelcome(sock);
  sock.receiveTimeout = -1;
  if (w.shutdown) return closeAndExit(sock, outbox, EXIT_OK, 0);
  if (w.timeout) {
    process.stderr.write(`bulkhead host.js: no answer to hello within ${WELCOME_TIMEOUT_MS / 1000} s\n`);
    return closeAndExit(sock, outbox, EXIT_REFUSED, 0);
  }
  if (w.error) {
    process.stderr.write(`bulkhead host.js: the trainer refused the handshake: ${w.error.code}: ${w.error.message}\n`);
    return closeAndExit(sock, outbox, EXIT_REFUSED, 0);
  }
  const welcome = w.result && typeof w.result === 'object' ? w.result : {};
  if (welcome.protocol !== catalogue.PROTOCOL_VERSION) {
    process.stderr.write(`bulkhead host.js: the trainer speaks protocol ${welcome.protocol}, this SDK speaks ${catalogue.PROTOCOL_VERSION}\n`);
    return closeAndExit(sock, outbox, EXIT_REFUSED, 0);
  }
  plugin.options = welcome.options && typeof welcome.options === 'object' ? { ...welcome.options } : {};
  plugin.scratch_dir = welcome.scratch_dir || process.env.BULKHEAD_SCRATCH_DIR || null;
  plugin.rank = welcome.rank ?? 0;
  plugin.world_size = welcome.world_size ?? 1;
  plugin.seed = welcome.seed ?? null;
  try {
    await plugin.configure();
  } catch (e) {
    const message = `${entry}: configure() threw ${e && e.name}: ${e && e.message}\n${(e && e.stack) || ''}`;
    process.stderr.write(message + '\n');
    outbox.send([NOTIFICATION, 'log', { level: 'error', message }]);
    return closeAndExit(sock, outbox, EXIT_LOAD_FAILED, 2000);
  }

  // 4. serve
  const session = new Session(sock, outbox, sink, plugin);
  const code = await session.serve();
  return closeAndExit(sock, outbox, code, 500);
}

main().catch((e) => {
  process.stderr.write(`bulkhead host.js: ${e && e.stack}\n`);
  process.exit(EXIT_REFUSED);
});
