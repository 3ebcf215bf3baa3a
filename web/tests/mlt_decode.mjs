// Decodes MapLibre Tiles with @maplibre/mlt, the decoder MapLibre GL JS uses, and prints each
// file's layers as one JSON line: per layer its name, extent and features, each feature as
// {id, kind (point|line|polygon), props (values as strings), coords ([x, y] in order, rings
// without their closing vertex)}, so tests/mlt.rs can compare them with the MVT of the same tile.
// Usage: node web/tests/mlt_decode.mjs FILE.mlt...
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

// The package is published for bundlers (extensionless ESM imports), so it is bundled here with
// the page's own esbuild, as the page bundles MapLibre, and imported from memory.
const bundle = await build({
  stdin: { contents: "export { decodeTile } from '@maplibre/mlt';", resolveDir: dirname(fileURLToPath(import.meta.url)) },
  bundle: true,
  platform: 'node',
  format: 'esm',
  write: false,
  logLevel: 'error',
});
const { decodeTile } = await import(`data:text/javascript;base64,${Buffer.from(bundle.outputFiles[0].text).toString('base64')}`);

const KIND = ['point', 'line', 'polygon', 'point', 'line', 'polygon'];

function feature(f) {
  const kind = KIND[f.geometry.type];
  const coords = [];
  for (const part of f.geometry.coordinates) {
    let pts = part.map((p) => [p.x, p.y]);
    const closed = pts.length > 1 && pts[0][0] === pts.at(-1)[0] && pts[0][1] === pts.at(-1)[1];
    if (kind === 'polygon' && closed) pts = pts.slice(0, -1);
    coords.push(...pts);
  }
  const props = {};
  for (const [k, v] of Object.entries(f.properties)) {
    if (v !== null && v !== undefined) props[k] = String(v);
  }
  return { id: f.id === undefined || f.id === null ? null : String(f.id), kind, props, coords };
}

for (const file of process.argv.slice(2)) {
  const tables = decodeTile(new Uint8Array(readFileSync(file)));
  const layers = tables.map((t) => ({ name: t.name, extent: t.extent, features: t.getFeatures().map(feature) }));
  console.log(JSON.stringify(layers));
}
