'use strict';
// Tidies captions: collapses whitespace, trims stray separators, sets the case, adds a prefix.
// Options: case ("keep" | "lower" | "upper" | "sentence"), collapse_whitespace (bool),
// prefix (string added once, unless the caption already starts with it).
const { BasePlugin } = require('bulkhead-plugin');

class CaptionCase extends BasePlugin {
  configure() {
    const o = this.options;
    this.caseMode = o.case ?? 'lower';
    if (!['keep', 'lower', 'upper', 'sentence'].includes(this.caseMode)) {
      throw new RangeError(`case must be keep, lower, upper or sentence, not ${this.caseMode}`);
    }
    this.collapse = o.collapse_whitespace ?? true;
    this.prefix = o.prefix ?? '';
  }

  transform_caption(caption) {
    if (this.caseMode === undefined) this.configure();
    let c = caption;
    if (this.collapse) c = c.replace(/\s+/g, ' ').replace(/\s+([,.;:])/g, '$1').replace(/^[\s,]+|[\s,]+$/g, '');
    if (this.caseMode === 'lower') c = c.toLowerCase();
    else if (this.caseMode === 'upper') c = c.toUpperCase();
    else if (this.caseMode === 'sentence') c = c.charAt(0).toUpperCase() + c.slice(1).toLowerCase();
    if (this.prefix && !c.startsWith(this.prefix)) c = this.prefix + c;
    return c;
  }
}

module.exports = CaptionCase;
