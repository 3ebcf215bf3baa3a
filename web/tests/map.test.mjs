// Browser test of the big-screen page, run by tests/browser.rs against a real onemap server:
//   node web/tests/map.test.mjs <base_url> <supervisor token> <device token> <shift leader token>
// Headless Debian Chromium through playwright-core. Checks that /map/ loads with no request
// leaving 127.0.0.1, that every tile layer renders features, that a case created through the API
// shows on the page (list and map) within 2 s without a reload, that the MLT switch draws the same
// features from MapLibre Tiles, and saves a screenshot to
// tests/artifacts/map.png. Exits non-zero with a message on the first failure.

import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateStyleMin } from '@maplibre/maplibre-gl-style-spec';
import { chromium } from 'playwright-core';

const [base, token, deviceToken, pageToken] = process.argv.slice(2);
if (!base || !token || !deviceToken || !pageToken) {
  console.error('usage: node web/tests/map.test.mjs <base_url> <supervisor_token> <device_token> <shift_leader_token>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const artifact = join(here, '..', '..', 'tests', 'artifacts', 'map.png');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LIVE_WITHIN_MS = 2000;

let browser;
const t0 = Date.now();
function log(msg) { console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`); }
async function fail(msg) {
  console.error(`FAIL: ${msg}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
function check(cond, msg) { if (!cond) throw new Error(msg); }
// The whole test must stay well inside the Rust test's budget.
setTimeout(() => fail('the browser test took longer than 80 s'), 80_000).unref();

/** Moves the map to `camera` and waits until it has drawn there. */
async function jump(page, camera) {
  const idle = await page.evaluate(async (c) => {
    const map = window.onemapMap;
    // 'idle' needs a frame with nothing left to draw; a tile refresh from the live feed landing
    // during the wait can postpone it for long on a software renderer. The camera has moved once
    // the tiles in view are loaded, which is all a test step needs.
    const idle = new Promise((r) => map.once('idle', () => r(true)));
    map.jumpTo(c);
    const loaded = new Promise((r) => {
      const poll = () => (map.areTilesLoaded() && !map.isMoving() ? r(false) : setTimeout(poll, 250));
      setTimeout(poll, 5000);
    });
    return Promise.race([idle, loaded]);
  }, camera);
  if (!idle) log(`jump to ${JSON.stringify(camera)}: tiles loaded, map not yet idle after 5 s`);
}

/** Rendered features per tile layer at `camera`: {layer: {counts (aggregates), features}}. */
async function renderedCounts(page, camera) {
  return page.evaluate(async (c) => {
    const map = window.onemapMap;
    if (c) {
      const idle = new Promise((r) => map.once('idle', r));
      map.jumpTo(c);
      await idle;
    }
    const out = {};
    for (const f of map.queryRenderedFeatures()) {
      const key = f.sourceLayer || f.source;
      const agg = f.properties && f.properties.count !== undefined ? 'counts' : 'features';
      out[key] ??= { counts: 0, features: 0 };
      out[key][agg] += 1;
    }
    return out;
  }, camera);
}

/** The API as the test's own client: the page's token unless the call brings its own. */
async function api(path, init = {}) {
  const headers = { authorization: `Bearer ${pageToken}`, ...(init.headers || {}) };
  const r = await fetch(`${base}${path}`, { ...init, headers });
  const text = await r.text();
  if (!r.ok) throw new Error(`${init?.method || 'GET'} ${path}: HTTP ${r.status} ${text}`);
  return JSON.parse(text);
}

/** Whether a URL the page asked for stays on this machine (data: never touches the network). */
function isLocal(url) {
  const u = new URL(url);
  if (u.protocol === 'data:') return true;
  if (u.protocol === 'blob:') return isLocal(u.pathname);
  return u.hostname === '127.0.0.1';
}

async function main() {
  // 0. Both styles, as served, are valid MapLibre styles that fetch only from this server.
  for (const name of ['dark', 'light']) {
    const style = await api(`/styles/${name}.json`);
    const problems = validateStyleMin(style);
    check(problems.length === 0, `${name}.json: ${problems.map((p) => p.message).join('; ')}`);
    const urls = [style.glyphs, ...Object.values(style.sources).flatMap((s) => [s.url, ...(s.tiles || [])])];
    for (const u of urls.filter(Boolean)) check(u.startsWith(`${base}/`), `${name}.json points outside: ${u}`);
  }
  const glyphs = await fetch(`${base}/fonts/${encodeURIComponent('DejaVu Sans Book')}/0-255.pbf`);
  check(glyphs.ok && (await glyphs.arrayBuffer()).byteLength > 1000, `no Latin glyphs: HTTP ${glyphs.status}`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      // WebGL without a GPU: SwiftShader, which Chromium no longer falls back to by itself.
      '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
      // Belt and braces: no host name but 127.0.0.1 resolves, so nothing can leave the machine.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
  const context = await browser.newContext({
    viewport: { width: 1600, height: 900 }, locale: 'zh-CN', timezoneId: 'Asia/Shanghai',
  });
  // Every request of the page and its workers (MapLibre fetches tiles from web workers).
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') console.log(`  console: ${m.text()}`); });

  // 0. The server is closed to anonymous readers: the page asks for a token.
  await page.goto(`${base}/map/`, { waitUntil: 'load' });
  await page.waitForSelector('#login:not([hidden])', { timeout: 10_000 })
    .catch(() => { throw new Error('without a token the page did not ask for one'); });
  log('login form shown without a token');

  // 1. Logged in (the shift leader's token, given once in the address), the page loads and the map draws.
  await page.goto(`${base}/map/?token=${pageToken}`, { waitUntil: 'load' });
  check(!(await page.url()).includes('token='), 'the token stays out of the address bar');
  await page.waitForFunction(() => window.onemapMap && window.onemapMap.loaded() && window.onemapMap.isStyleLoaded(),
    null, { timeout: 20_000 }).catch(() => { throw new Error('the map did not finish loading in 20 s'); });
  log('map loaded');
  await page.waitForFunction(() => document.body.dataset.feed === 'live', null, { timeout: 10_000 })
    .catch(() => { throw new Error('the live feed (/api/v1/events) did not connect in 10 s'); });
  log('live feed connected');
  const overview = await page.evaluate(() => {
    const m = window.onemapMap;
    return { center: m.getCenter().toArray(), zoom: m.getZoom() };
  });
  const title = await page.textContent('#panel');
  for (const word of ['今日案件', '在办案件', '超期案件', '本月结案率', '网格', '部件', '案件', '传感器', '最新案件']) {
    check(title.includes(word), `the side panel lacks ${word}`);
  }

  // 2. Every tile layer renders features at a zoom where it is drawn.
  const one = async (collection) => {
    const fc = await api(`/collections/${collection}/items?limit=1`);
    check(fc.features.length === 1, `no ${collection} in the demo city`);
    const g = fc.features[0].geometry;
    return g.type === 'Point' ? g.coordinates : g.coordinates[0][0];
  };
  const [componentAt, caseAt, sensorAt] = [await one('components'), await one('cases'), await one('sensors')];
  const city = await page.evaluate(() => { const c = window.onemapMap.getCenter(); return [c.lng, c.lat]; });
  const views = [
    { name: 'z12 city', camera: { center: city, zoom: 12 }, layers: ['districts', 'streets', 'communities', 'case_density', 'sensors'] },
    { name: 'z14 at a component', camera: { center: componentAt, zoom: 14 }, layers: ['grids', 'components', 'cases', 'cameras'] },
    { name: 'z17 at a component', camera: { center: componentAt, zoom: 17 }, layers: ['grids', 'components'] },
    { name: 'z17 at a case', camera: { center: caseAt, zoom: 17 }, layers: ['cases'] },
    { name: 'z15 at a sensor', camera: { center: sensorAt, zoom: 15 }, layers: ['sensors'] },
  ];
  const seen = {};
  let mvtAtComponent = {};
  for (const v of views) {
    const counts = await renderedCounts(page, v.camera);
    if (v.name === 'z14 at a component') mvtAtComponent = counts;
    log(`${v.name}: ${JSON.stringify(counts)}`);
    for (const l of v.layers) {
      const c = counts[l] || { counts: 0, features: 0 };
      check(c.counts + c.features > 0, `no rendered feature of layer ${l} (${v.name})`);
      seen[l] = true;
    }
    if (v.name.startsWith('z17')) {
      for (const l of v.layers) check(counts[l].features > 0, `${l} are still aggregated at z17`);
    }
  }
  log(`rendered layers: ${Object.keys(seen).join(', ')}`);

  // 3. A case created through the API appears on the page within 2 s, without reload.
  // Beside a case well inside the city: the first listed ones lie at its edge (records are
  // stored in spatial order), where 30 m away may be outside every grid.
  let near = null;
  for (const f of (await api('/collections/cases/items?limit=200')).features) {
    const p = [f.geometry.coordinates[0] + 0.0003, f.geometry.coordinates[1] + 0.0002];
    const r = await fetch(`${base}/api/v1/locate?lon=${p[0]}&lat=${p[1]}`, { headers: { authorization: `Bearer ${pageToken}` } });
    if (r.ok) { near = p; break; }
  }
  check(near !== null, 'no case with a grid beside it');
  await jump(page, { center: near, zoom: 17 });
  const loc = await api(`/api/v1/locate?lon=${near[0]}&lat=${near[1]}`);
  check(loc.grid && loc.grid.code, 'the test point is in no grid');
  const navigations = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations.push(f.url()); });
  const created = await api('/api/v1/cases', {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ class_code: '0110', lon: near[0], lat: near[1], description: '浏览器测试 暴露垃圾', source: 'supervisor' }),
  });
  const tCreated = Date.now();
  check(created.id != null, `POST /api/v1/cases answered without an id: ${JSON.stringify(created)}`);
  log(`created case ${created.id} (status ${created.status}, light ${created.light})`);
  const shown = ({ id, layers }) => {
    const map = window.onemapMap;
    const inList = !!document.querySelector(`#case-list li[data-case-id="${id}"]`);
    const rendered = map.queryRenderedFeatures({ layers }).some((f) => String(f.properties.id) === String(id));
    return inList && rendered;
  };
  await page.waitForFunction(shown, { id: created.id, layers: ['live-case', 'case-point'] }, { timeout: LIVE_WITHIN_MS, polling: 50 })
    .catch(() => { throw new Error(`case ${created.id} was not in the list and on the map within ${LIVE_WITHIN_MS} ms`); });
  log(`case ${created.id} on the page after ${Date.now() - tCreated} ms`);
  // The refreshed tiles carry it too (tiles.invalidated -> map.refreshTiles), a moment later.
  await page.waitForFunction(
    (id) => window.onemapMap.queryRenderedFeatures({ layers: ['case-point'] }).some((f) => String(f.properties.id) === String(id)),
    created.id, { timeout: 10_000, polling: 100 },
  ).catch(() => { throw new Error(`case ${created.id} never reached the vector tiles (tiles.invalidated refresh)`); });
  log(`case ${created.id} in the refreshed vector tiles after ${Date.now() - tCreated} ms`);
  check(navigations.length === 0, `the page reloaded: ${navigations.join(', ')}`);
  const listText = await page.textContent(`#case-list li[data-case-id="${created.id}"]`);
  check(listText.includes('暴露垃圾'), `the list item does not name the class: ${listText}`);

  // 3a'. The supervisor's report photo: a click on the case shows its thumbnail in the popup.
  const form = new FormData();
  form.append('file', new Blob([await readFile(process.env.PHOTO_FILE)]), 'report.jpg');
  const photo = await api(`/api/v1/cases/${created.id}/media`, {
    method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form,
  });
  check(photo.step === 'report' && photo.thumbnail_url, `photo upload: ${JSON.stringify(photo)}`);
  const caseAtPx = await page.evaluate(([lon, lat]) => {
    const p = window.onemapMap.project([lon, lat]);
    const r = window.onemapMap.getCanvas().getBoundingClientRect();
    return { x: r.left + p.x, y: r.top + p.y };
  }, near);
  await page.mouse.click(caseAtPx.x, caseAtPx.y);
  await page.waitForFunction(() => {
    const img = document.querySelector('.case-popup .case-photos img');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 5000, polling: 100 })
    .catch(async () => { throw new Error(`no photo in the case popup: ${await page.innerHTML('.case-popup').catch(() => 'no popup')}`); });
  const caption = await page.textContent('.case-popup figcaption');
  check(caption.includes('上报'), `the photo caption does not name its step: ${caption}`);
  log(`case ${created.id}'s photo in its popup`);
  await page.keyboard.press('Escape');
  await page.evaluate(() => document.querySelector('.maplibregl-popup-close-button')?.click());

  // 3b. A sensor reading past red raises an alarm: it is in the alarm list within 2 s, and the
  // sensor turns red in the refreshed vector tiles.
  const sensor = (await api('/collections/sensors/items?limit=1')).features[0];
  const code = sensor.properties.code;
  const th = (await api(`/api/v1/sensors/${encodeURIComponent(code)}`)).thresholds;
  // Past red by the orange-red step: well inside the kind's plausible range either way.
  const step = Math.abs(th.red - th.orange);
  const red = th.direction === 'below' ? th.red - step : th.red + step;
  await jump(page, { center: sensor.geometry.coordinates, zoom: 17 });
  // Two readings the minimum duration apart, so the level holds long enough to be raised.
  const now = Date.now();
  const readings = [now - (th.min_duration_s + 1) * 1000, now].map((t) => ({ sensor: code, at: new Date(t).toISOString(), value: red }));
  const rep = await api('/api/v1/sensors/readings', {
    method: 'POST',
    headers: { authorization: `Bearer ${deviceToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ readings }),
  });
  const tRead = Date.now();
  check(rep.accepted === 2, `readings not accepted: ${JSON.stringify(rep)}`);
  await page.waitForFunction((c) => !!document.querySelector(`#alarm-list li[data-sensor="${c}"][data-level="red"]`), code,
    { timeout: LIVE_WITHIN_MS, polling: 50 })
    .catch(() => { throw new Error(`the red alarm of ${code} was not in the alarm list within ${LIVE_WITHIN_MS} ms`); });
  log(`alarm of ${code} in the list after ${Date.now() - tRead} ms`);
  await page.waitForFunction(
    (c) => window.onemapMap.queryRenderedFeatures({ layers: ['sensor-point'] }).some((f) => f.properties.code === c && f.properties.level === 'red'),
    code, { timeout: 10_000, polling: 100 },
  ).catch(() => { throw new Error(`sensor ${code} never turned red in the vector tiles`); });
  log(`sensor ${code} red in the tiles after ${Date.now() - tRead} ms`);

  // 3b'. 一键联动: 启动预案 on the alarm starts the chosen plan there; the open incident shows in
  // 联动事件 with each department's state, and a click on it lists the resources around.
  const tStart = Date.now();
  const alarmItem = `#alarm-list li[data-sensor="${code}"][data-level="red"]`;
  await page.click(`${alarmItem} .plan-start`);
  await page.waitForSelector(`${alarmItem} .plan-choice`, { timeout: 5000 })
    .catch(() => { throw new Error('启动预案 did not offer the plans'); });
  await page.selectOption(`${alarmItem} .plan-choice`, 'park-fire');
  await page.click(`${alarmItem} .plan-go`);
  const incidentId = await page.waitForFunction((s) => document.querySelector(s)?.querySelector('.plan-picker')?.dataset.incident,
    alarmItem, { timeout: 5000, polling: 50 }).then((h) => h.jsonValue())
    .catch(async () => { throw new Error(`the plan did not start: ${await page.textContent(alarmItem)}`); });
  await page.waitForFunction((id) => document.querySelectorAll(`#incident-list li[data-incident-id="${id}"] .task`).length >= 2,
    incidentId, { timeout: LIVE_WITHIN_MS, polling: 50 })
    .catch(() => { throw new Error(`incident ${incidentId} was not listed with its departments within ${LIVE_WITHIN_MS} ms`); });
  const started = await api(`/api/v1/incidents/${incidentId}`);
  check(started.plan === 'park-fire' && started.alarm_id != null, `the incident: ${JSON.stringify(started)}`);
  const badges = await page.$$eval(`#incident-list li[data-incident-id="${incidentId}"] .task`, (els) => els.map((e) => e.dataset.dept));
  check(badges.length === started.tasks.length, `departments shown ${badges.length}, tasks ${started.tasks.length}`);
  log(`plan started from the alarm, incident ${incidentId} listed with ${badges.length} departments after ${Date.now() - tStart} ms`);
  await page.click(`#incident-list li[data-incident-id="${incidentId}"] .title`);
  await page.waitForFunction((id) => document.querySelector(`#incident-list li[data-incident-id="${id}"]`)?.dataset.resources !== undefined,
    incidentId, { timeout: 5000, polling: 100 })
    .catch(() => { throw new Error('the resources around the incident were not listed'); });
  log(`resources: ${await page.textContent(`#incident-list li[data-incident-id="${incidentId}"] .resources`)}`);

  // 3c. A supervisor's phone posts two positions: the member is counted on duty and drawn on
  // the map at once (from the feed), and a click on them draws today's track.
  const member = (await api('/api/v1/staff')).staff[0];
  const [slon, slat] = sensor.geometry.coordinates;
  const walk = [[-60, slon, slat], [-30, slon + 0.0004, slat + 0.0002]].map(([s, lon, lat]) =>
    ({ staff: member.code, at: new Date(Date.now() + s * 1000).toISOString(), lon, lat }));
  const tPlaced = Date.now();
  const placed = await api('/api/v1/staff/positions', {
    method: 'POST',
    headers: { authorization: `Bearer ${deviceToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ positions: walk }),
  });
  check(placed.accepted === 2, `positions not accepted: ${JSON.stringify(placed)}`);
  await page.waitForFunction((c) => window.onemapMap.queryRenderedFeatures({ layers: ['staff-point'] })
    .some((f) => f.properties.code === c), member.code, { timeout: LIVE_WITHIN_MS, polling: 50 })
    .catch(() => { throw new Error(`supervisor ${member.code} was not drawn within ${LIVE_WITHIN_MS} ms`); });
  log(`supervisor ${member.code} on the map after ${Date.now() - tPlaced} ms`);
  const onDuty = Number((await page.textContent('#count-staff')).replace(/\D/g, ''));
  check(onDuty >= 1, `the on-duty counter shows ${onDuty}`);
  const at = await page.evaluate(([lon, lat]) => {
    const p = window.onemapMap.project([lon, lat]);
    const r = window.onemapMap.getCanvas().getBoundingClientRect();
    return { x: r.left + p.x, y: r.top + p.y };
  }, [walk[1].lon, walk[1].lat]);
  await page.mouse.click(at.x, at.y);
  await page.waitForFunction(() => Number(document.querySelector('.staff-popup')?.dataset.trackPoints) >= 2, null,
    { timeout: 5000, polling: 100 })
    .catch(async () => { throw new Error(`no track in the supervisor popup: ${await page.textContent('.staff-popup').catch(() => 'no popup')}`); });
  await page.waitForFunction(() => window.onemapMap.queryRenderedFeatures({ layers: ['staff-track-line'] }).length > 0, null,
    { timeout: 5000, polling: 100 })
    .catch(() => { throw new Error('the track of the selected supervisor was not drawn'); });
  log(`track of ${member.code} drawn ${Date.now() - tPlaced} ms after the positions`);

  // 3d. The hotspot analysis button runs Gi* and the overlay draws the hot and cold grids.
  await jump(page, { center: city, zoom: 14 });
  const tHot = Date.now();
  await page.click('#hotspot-run');
  await page.waitForFunction(() => document.getElementById('hotspot-status').textContent.includes('热点网格'), null,
    { timeout: 10_000, polling: 100 })
    .catch(async () => { throw new Error(`the hotspot analysis did not answer: ${await page.textContent('#hotspot-status')}`); });
  await page.waitForFunction(() => window.onemapMap.queryRenderedFeatures({ layers: ['hotspot-fill'] }).length > 0, null,
    { timeout: 10_000, polling: 100 })
    .catch(() => { throw new Error('no hotspot grid was drawn after the analysis'); });
  const bins = await page.evaluate(() => [...new Set(window.onemapMap.queryRenderedFeatures({ layers: ['hotspot-fill'] })
    .map((f) => f.properties.bin))]);
  check(bins.every((b) => b !== 0 && b >= -3 && b <= 3), `hotspot bins drawn: ${bins}`);
  log(`hotspots drawn (bins ${bins.sort().join(',')}) ${Date.now() - tHot} ms after the click`);

  // 4. A screenshot of the big screen.
  // The overview the screen opened with, the new case among the others.
  await jump(page, overview);
  await mkdir(dirname(artifact), { recursive: true });
  await page.screenshot({ path: artifact });
  log(`screenshot ${artifact}`);

  // 4b. The MLT 瓦片 switch: the page reloads drawing MapLibre Tiles, every tile asked for as MLT,
  // and the layers render as they did from MVT.
  const sinceMlt = requests.length;
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#tiles-mlt')]);
  await page.waitForFunction(() => window.onemapMap && window.onemapMap.loaded() && window.onemapMap.isStyleLoaded(),
    null, { timeout: 20_000 }).catch(() => { throw new Error('the map did not load with MLT tiles in 20 s'); });
  check(await page.isChecked('#tiles-mlt'), 'the MLT switch is not kept across the reload');
  const mltCounts = await renderedCounts(page, { center: componentAt, zoom: 14 });
  log(`MLT z14 at a component: ${JSON.stringify(mltCounts)}`);
  for (const l of ['grids', 'components', 'cases', 'cameras']) {
    const c = mltCounts[l] || { counts: 0, features: 0 };
    check(c.counts + c.features > 0, `no rendered feature of layer ${l} from MLT tiles`);
  }
  // The layers nothing in this test changes draw exactly what they drew from MVT.
  for (const l of ['grids', 'components', 'cameras']) {
    check(JSON.stringify(mltCounts[l]) === JSON.stringify(mvtAtComponent[l]),
      `${l} from MLT ${JSON.stringify(mltCounts[l])}, from MVT ${JSON.stringify(mvtAtComponent[l])}`);
  }
  const tileRequests = requests.slice(sinceMlt).filter((u) => /\/tiles\/[^/?]+\/\d+\/\d+\/\d+/.test(u));
  check(tileRequests.length > 0, 'no tile was requested after switching to MLT');
  const asMvt = tileRequests.filter((u) => !u.includes('f=mlt'));
  check(asMvt.length === 0, `tiles still asked for as MVT: ${asMvt.slice(0, 3).join(', ')}`);
  log(`${tileRequests.length} tiles drawn from MLT`);

  // 5. Nothing left 127.0.0.1, and nothing broke.
  const outside = requests.filter((u) => !isLocal(u));
  check(requests.some((u) => u.includes('/tiles/')), 'no tile request was recorded (worker requests missing?)');
  check(outside.length === 0, `requests left 127.0.0.1: ${[...new Set(outside)].slice(0, 10).join(', ')}`);
  log(`${requests.length} requests, all to 127.0.0.1`);
  check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
  const mapErrors = await page.evaluate(() => window.onemapErrors);
  check(mapErrors.length === 0, `map errors: ${mapErrors.join('; ')}`);
  await browser.close();
  console.log('browser test passed');
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
