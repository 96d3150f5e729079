'use strict';
// stateful-node: stateful-python's algorithm through the JavaScript SDK (tests/trainer/plugin_state_test.cpp).
const { BasePlugin } = require('bulkhead-plugin');

// Values a careless codec changes: after each set_state the plugin logs "state exact" when they
// came back as they were (Object.is: -0 is not 0), else "state changed: ..." naming which.
const EXACT = { negative_zero: -0, subnormal: 5e-324, half: 0.5, third: 1 / 3, nan: NaN, largest_safe: Number.MAX_SAFE_INTEGER };
const changedValues = (values) => Object.keys(EXACT).filter((name) => !values || !Object.is(values[name], EXACT[name]));

const nextRandom = (value) => (Math.imul(value, 1664525) + 1013904223) >>> 0;

class Stateful extends BasePlugin {
  static state_attributes = ['owner', 'epochs', 'random', 'exact'];

  configure() {
    this.owner = this.constructor.pluginMeta().name;
    this.epochs = 0;
    this.random = Number(this.options.seed) >>> 0;
    this.exact = { ...EXACT };
    this.stepStarts = 0; // of this process: not state
  }

  on_step_start() {
    this.stepStarts += 1;
    const every = Number(this.options.crash_every);
    if (every && this.stepStarts % every === 0) process.kill(process.pid, 'SIGSEGV');
  }

  on_epoch_end() {
    this.epochs += 1;
    this.random = nextRandom(this.random);
    const gradAccum = 1 + ((this.epochs + (this.random >>> 16)) % 3);
    this.set_arg('grad_accum', gradAccum);
    this.log('info', `epoch end ${this.epochs}: random ${this.random}, grad_accum ${gradAccum}`);
  }

  set_state(state) {
    if (this.options.reject_state) throw new RangeError('this version reads no earlier state');
    if (state.owner !== this.owner) throw new RangeError(`given the state of ${state.owner}`);
    super.set_state(state);
    this.log('info', `set_state: ${this.epochs} epochs seen`);
    const changed = changedValues(this.exact);
    this.log('info', changed.length ? `state changed: ${changed.join(', ')}` : 'state exact');
  }
}
module.exports = Stateful;
