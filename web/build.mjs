// Builds the big-screen page into dist/: the bundle (MapLibre GL JS included, nothing from a
// CDN), its stylesheet, MapLibre's worker module and index.html. Run with `npm run build`.

import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

/** Class code -> name from the server's class dictionaries (data/*_classes.csv). */
async function classNames() {
  const names = {};
  for (const file of ['event_classes.csv', 'component_classes.csv']) {
    const text = await readFile(join(here, '..', 'data', file), 'utf8');
    for (const line of text.split('\n')) {
      if (!line.trim() || line.startsWith('#')) continue;
      const [code, , name] = line.split(',');
      if (/^\d{4}$/.test(code) && name) names[code] = name.trim();
    }
  }
  return names;
}

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src/main.js'), join(here, 'src/style.css')],
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'linked',
  define: { __CLASS_NAMES__: JSON.stringify(await classNames()) },
  logLevel: 'warning',
});
await copyFile(join(here, 'node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs'), join(dist, 'maplibre-gl-worker.mjs'));
await copyFile(join(here, 'src/index.html'), join(dist, 'index.html'));
console.log(`web build written to ${dist}`);
