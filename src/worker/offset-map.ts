// The offset map's format lives beside its other reader, the lag (src/lag/offset-map.ts): the
// worker writes it, `computeLag` subtracts what it says is done, and src/lag must not import src/worker.
export {
  DEFAULT_METADATA_MAX_CHARS,
  decodeOffsetMap,
  encodeOffsetMap,
  offsetMapCapacity,
} from '../lag/offset-map.js';
