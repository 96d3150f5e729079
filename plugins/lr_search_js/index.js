'use strict';
// lr_search_js: a fine-tuning method with a search of its own (algorithm "plugin"). The learning
// rate is searched on a log scale: the first trial takes the middle of [min_lr, max_lr]; each next
// one steps from the best trial so far, halving the step after a trial that did not beat it.
// Options: min_lr, max_lr, max_evals, settings (train.json knobs every trial gets).
// Should it fail, the trainer draws that trial's lr at random in the same range.
const { BasePlugin } = require('bulkhead-plugin');

class LrSearch extends BasePlugin {
  describe_method() {
    const o = this.options;
    return {
      settings: o.settings || {},
      search_space: { lr: { min: o.min_lr, max: o.max_lr, log: true } },
      algorithm: 'plugin',
      max_evals: o.max_evals,
      accumulators: [{ metric: 'val_loss', min: true }],
      main_metric: 'val_loss',
      higher_is_better: false,
      keep: 'best',
    };
  }

  suggest_trial({ search_space: space, history, higher_is_better: higher }) {
    // The range is the one describe_method gave; a caller that sends no search space gets it too.
    const range = (space && space.lr) || { min: this.options.min_lr, max: this.options.max_lr };
    const lo = Math.log(range.min);
    const hi = Math.log(range.max);
    const clamp = (x) => Math.min(hi, Math.max(lo, x));
    const done = history.filter((t) => t.status === 'ok');
    if (done.length === 0) return { params: { lr: Math.exp((lo + hi) / 2) } };
    const better = (a, b) => (higher ? a.score > b.score : a.score < b.score);
    const best = done.reduce((a, b) => (better(b, a) ? b : a));
    // The step shrinks with every trial that did not improve on the best, and alternates direction;
    // a point already tried (or clamped onto one) is skipped for the next smaller step.
    const misses = history.length - 1 - history.findIndex((t) => t.trial === best.trial);
    const tried = (x) => history.some((t) => Math.abs(Math.log(t.params.lr) - x) < 1e-9);
    for (let k = Math.floor(misses / 2); k < Math.floor(misses / 2) + 20; k++) {
      const step = ((hi - lo) / 4) / 2 ** k;
      for (const direction of misses % 2 === 0 ? [-1, 1] : [1, -1]) {
        const x = clamp(Math.log(best.params.lr) + direction * step);
        if (!tried(x)) return { params: { lr: Math.exp(x) } };
      }
    }
    return { params: { lr: best.params.lr } };
  }

  on_trial_end(trial) {
    this.log('info', `trial ${trial.trial}: lr ${trial.params.lr}, ${trial.status}, val_loss ${trial.score}`);
  }
}

module.exports = LrSearch;
