'use strict';
// Bulkhead plugin SDK for JavaScript (protocol v1).
//
//   const { BasePlugin } = require('bulkhead-plugin');
//   class Shout extends BasePlugin {
//     transform_caption(caption) { return caption + '!'; }
//   }
//   module.exports = Shout;
//
// Hook names are EveryDream2's (snake_case), as in every Bulkhead SDK. Observer hooks get one
// object of keyword arguments; methods may be async.
const catalogue = require('./lib/catalogue');

const LEVELS = ['debug', 'info', 'warning', 'error'];

// Undefined when value is plain data MessagePack carries as it is; else what and where it is not.
function plainDataProblem(value, where) {
  if (value === null || ['string', 'number', 'boolean'].includes(typeof value) || value instanceof Uint8Array) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = plainDataProblem(value[i], `${where}[${i}]`);
      if (problem) return problem;
    }
    return undefined;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, item] of Object.entries(value)) {
      const problem = plainDataProblem(item, `${where}.${key}`);
      if (problem) return problem;
    }
    return undefined;
  }
  const kind = typeof value === 'object' ? value.constructor?.name || 'object' : typeof value;
  return `a ${kind} at ${where}: a state is plain data (objects, arrays, strings, numbers, booleans, null, Uint8Array)`;
}

function makeSetArg(name, value, reason) {
  const spec = catalogue.setArgSpec();
  if (!spec.names.includes(name)) {
    // EveryDream2's arg_update_callback throws for any other name; so do we.
    throw new TypeError(`Unrecognized arg: ${name} (a plugin may set only: ${spec.names.join(', ')})`);
  }
  if (typeof value === 'bigint') value = Number(value);
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new RangeError(`${name} must be an integer, not ${String(value)}`);
  }
  if ((spec.minimum !== undefined && value < spec.minimum) || (spec.maximum !== undefined && value > spec.maximum)) {
    throw new RangeError(`${name} must be between ${spec.minimum} and ${spec.maximum}, not ${value}`);
  }
  const req = { action: 'set_arg', name, value };
  if (reason !== undefined) req.reason = String(reason);
  return req;
}

class BasePlugin {
  // Meta: override with static fields (static name is the class name by default, so use pluginName);
  // unset ones come from the manifest (the environment).
  static pluginName = undefined;
  static version = undefined;
  static description = undefined;

  constructor() {
    this.options = {};        // set after the handshake
    this.scratch_dir = null;  // a folder the plugin may write to
    // A data-parallel run's rank (bulkhead train --nproc): each has its own host of the plugin;
    // seed differs from rank to rank, for the plugin's own randomness.
    this.rank = 0;
    this.world_size = 1;
    this.seed = null;
  }

  // lifecycle hooks (EveryDream2) -- kwargs is one object
  on_training_start(kwargs) {}
  on_epoch_start(kwargs) {}
  on_step_start(kwargs) {}
  on_step_end(kwargs) {}
  on_epoch_end(kwargs) {}
  on_training_end(kwargs) {}
  // Bulkhead's added observers
  on_checkpoint_saved(kwargs) {}
  on_validation_end(kwargs) {}
  on_log(kwargs) {}
  // data loader transforms
  transform_caption(caption) { return caption; }
  transform_pil_image(image) { return image; } // { width, height, mode, data: Uint8Array }
  // A loader batch in one message (protocol 2): by default each item goes through the per-item
  // method above (which may be async), so a plugin that overrides only that one gets batches too;
  // override these to work on the whole batch (same length, same order).
  async transform_captions(captions) {
    const out = [];
    for (const caption of captions) out.push(await this.transform_caption(caption));
    return out;
  }
  async transform_pil_images(images) {
    const out = [];
    for (const image of images) out.push(await this.transform_pil_image(image));
    return out;
  }
  // fine-tuning methods (manifest "provides": "method"; docs/methods.md): describe_method,
  // suggest_trial and evaluate return their result (an object); see hooks.json
  describe_method(kwargs) { return null; }
  suggest_trial(kwargs) { return null; }
  on_trial_start(kwargs) {}
  on_trial_end(kwargs) {}
  evaluate(kwargs) { return null; }
  on_study_end(kwargs) {}

  // Plugin state, kept across restarts, reloads and resumes: name the fields to keep (plain data:
  // objects, arrays, strings, numbers, booleans, null, Uint8Array), or override get_state and
  // set_state together. set_state may throw to refuse a state (the plugin then starts empty).
  static state_attributes = [];
  get_state() {
    const keep = this.constructor.state_attributes;
    return Object.fromEntries(keep.filter((name) => name in this).map((name) => [name, this[name]]));
  }
  set_state(state) {
    if (state === null || typeof state !== 'object' || Array.isArray(state)) {
      throw new TypeError('the state is not the object of state_attributes');
    }
    const keep = this.constructor.state_attributes;
    const unknown = Object.keys(state).filter((name) => !keep.includes(name));
    if (unknown.length) throw new RangeError(`the state holds ${unknown.join(', ')}, not among state_attributes [${keep.join(', ')}]`);
    Object.assign(this, state); // all checked first: never half a state
  }

  // model access (manifest permissions.model_access; docs/protocol.md, section 9): sent only to a
  // granted plugin; the returned object (or null) is the reply
  on_model_load(kwargs) { return null; }
  on_model_step(kwargs) { return null; }
  on_model_save(kwargs) { return null; }

  // Called once after the handshake; this.options is ready.
  configure() {}

  request_stop(reason = '') { this._control({ action: 'stop', reason: String(reason) }); }
  request_checkpoint(tag, reason = '') {
    const req = { action: 'save_checkpoint', reason: String(reason) };
    if (tag !== undefined && tag !== null) req.tag = String(tag);
    this._control(req);
  }
  // Deletes a checkpoint the trainer saved on this plugin's request (on_checkpoint_saved's path).
  request_checkpoint_removal(path, reason = '') {
    this._control({ action: 'delete_checkpoint', path: String(path), reason: String(reason) });
  }
  set_arg(name, value, reason) { this._control(makeSetArg(name, value, reason)); }

  log(level, message) {
    if (!LEVELS.includes(level)) throw new RangeError(`log level must be one of ${LEVELS.join(', ')}, not ${level}`);
    if (this._bulkheadSink) this._bulkheadSink.log(level, String(message));
    else console.error(`[${level}] ${message}`);
  }

  _control(request) {
    if (this._bulkheadSink) this._bulkheadSink.control(request);
    else (this.unsent_control_requests ||= []).push(request);
  }

  static pluginMeta() {
    const env = process.env;
    const name = this.pluginName || env.BULKHEAD_PLUGIN_NAME || this.name || 'plugin';
    const version = this.version || env.BULKHEAD_PLUGIN_VERSION || '0.0.0';
    const description = this.description !== undefined ? this.description : env.BULKHEAD_PLUGIN_DESCRIPTION || '';
    return { name: String(name), version: String(version), description: String(description) };
  }

  // The catalogue hooks this class overrides relative to BasePlugin; a batched transform too when
  // it overrides the per-item one (hooks.json batch_of); get_state and set_state too when it names
  // state_attributes.
  static implementedHooks() {
    const overrides = (h) => typeof this.prototype[h] === 'function' && this.prototype[h] !== BasePlugin.prototype[h];
    return catalogue.hookNames().filter((h) => overrides(h) ||
      (catalogue.hook(h).batch_of !== undefined && overrides(catalogue.hook(h).batch_of)) ||
      (catalogue.stateHooks().includes(h) && this.state_attributes.length > 0));
  }
}

module.exports = { BasePlugin, makeSetArg, plainDataProblem, catalogue, PROTOCOL_VERSION: catalogue.PROTOCOL_VERSION };
