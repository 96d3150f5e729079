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

  // The catalogue hooks this class overrides relative to BasePlugin.
  static implementedHooks() {
    return catalogue.hookNames().filter((h) => typeof this.prototype[h] === 'function' && this.prototype[h] !== BasePlugin.prototype[h]);
  }
}

module.exports = { BasePlugin, makeSetArg, catalogue, PROTOCOL_VERSION: catalogue.PROTOCOL_VERSION };
