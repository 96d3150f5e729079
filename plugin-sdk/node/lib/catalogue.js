'use strict';
// The hook catalogue, read from Bulkhead's schemas/hooks.json (the single source of truth).
// Found through $BULKHEAD_HOME/schemas, else <sdk>/../../schemas (this file is <home>/plugin-sdk/node/lib).
const fs = require('fs');
const path = require('path');

function homeDir() {
  if (process.env.BULKHEAD_HOME) return path.resolve(process.env.BULKHEAD_HOME);
  return path.resolve(__dirname, '..', '..', '..');
}

function schemasDir() {
  const candidates = [];
  if (process.env.BULKHEAD_HOME) candidates.push(path.join(process.env.BULKHEAD_HOME, 'schemas'));
  candidates.push(path.resolve(__dirname, '..', '..', '..', 'schemas'));
  for (const c of candidates) {
    if (fs.existsSync(path.join(c, 'hooks.json'))) return path.resolve(c);
  }
  throw new Error(`cannot find Bulkhead's schemas/hooks.json (looked in: ${candidates.join(', ')}); set BULKHEAD_HOME`);
}

const cache = new Map();
function loadSchema(relative) {
  if (!cache.has(relative)) {
    cache.set(relative, JSON.parse(fs.readFileSync(path.join(schemasDir(), relative), 'utf8')));
  }
  return cache.get(relative);
}

const catalogue = () => loadSchema('hooks.json');
// The protocol this SDK speaks: the catalogue's, so that no second copy can disagree with it.
const PROTOCOL_VERSION = catalogue().protocol_version;
const hookNames = () => Object.keys(catalogue().hooks);
const hook = (name) => catalogue().hooks[name];
const argUpdateHooks = () => hookNames().filter((n) => hook(n).arg_update_callback === true);
// Hooks sent only to plugins granted model_access, whose return value is the reply.
const modelHooks = () => hookNames().filter((n) => hook(n).model_access === true);
// The plugin-state pair (get_state, set_state), which a plugin keeping state declares.
const stateHooks = () => hookNames().filter((n) => hook(n).state === true);

function setArgSpec() {
  for (const alt of loadSchema('protocol/control.schema.json').items.oneOf) {
    const p = alt.properties || {};
    if (p.action && p.action.const === 'set_arg') {
      return { names: (p.name && p.name.enum) || [], minimum: p.value.minimum, maximum: p.value.maximum };
    }
  }
  return { names: [], minimum: undefined, maximum: undefined };
}

module.exports = { PROTOCOL_VERSION, homeDir, schemasDir, loadSchema, catalogue, hookNames, hook, argUpdateHooks, modelHooks, stateHooks, setArgSpec };
