// The big-screen page (指挥中心大屏 "一屏通览"): a full-screen dark map of the city from this
// server's vector tiles, live counters, the newest cases, and live updates from the SSE feed.
// It runs for days without reload, so every collection here is capped and every listener is
// attached once (or to an EventSource that is closed before it is replaced).

import { Map as MapLibreMap, Popup, setWorkerUrl } from 'maplibre-gl';

/* global __CLASS_NAMES__ */
const CLASS_NAMES = typeof __CLASS_NAMES__ === 'object' ? __CLASS_NAMES__ : {};

const LIST_MAX = 20; // cases shown in 最新案件
const LIVE_MAX = 200; // cases drawn by the live overlay
const LIVE_TTL_MS = 30 * 60 * 1000; // the overlay forgets a case after this; tiles have it by then
const ERRORS_MAX = 50;
const REFRESH_TILES_MAX = 1024; // tiles refreshed per source at once (a view holds far fewer)
const SUMMARY_EVERY_MS = 60 * 1000; // counters also refresh on their own (day and month roll over)

/** Tile layers by the style source that carries them (styles/dark.json). */
const SOURCE_OF = {
  districts: 'admin', streets: 'admin', communities: 'admin', grids: 'admin',
  components: 'components', cases: 'cases', case_density: 'cases', sensors: 'sensors',
  hotspots: 'hotspots', cameras: 'cameras',
};

const STATUS_NAMES = {
  reported: '已上报', accepted: '已受理', rejected: '不予受理', verified: '已核实', filed: '已立案',
  voided: '已作废', dispatched: '已派遣', handled: '已处置', checked: '已核查', closed: '已结案',
  returned: '已回退', hung: '已挂账', hung_up: '已挂账', postponed: '已延期',
};
const SOURCE_NAMES = { supervisor: '监督员', public: '公众', hotline: '12345热线', sensor: '传感器', video: '视频' };
const LIGHT_COLOURS = { green: '#2ecc71', yellow: '#f4d03f', red: '#ff4d4f' };

// Errors the map reported, for people (console) and for the browser test.
const errors = [];
window.onemapErrors = errors;
function recordError(what, err) {
  const text = `${what}: ${err && err.message ? err.message : err}`;
  console.error(text);
  errors.push(text);
  if (errors.length > ERRORS_MAX) errors.shift();
}

// ---------------------------------------------------------------------------------------------
// Map

setWorkerUrl(new URL('maplibre-gl-worker.mjs', import.meta.url).href);

// The bearer token the page reads with: given once as ?token=… (then kept in this browser and
// dropped from the address bar), or typed into the login form a 401 brings up. Tiles, JSON and
// the live feed all carry it; without one the page reads only from a --public-read server.
const TOKEN_KEY = 'onemap.token';
// The tile encoding: MapLibre Tiles (MLT) when chosen with ?tiles=mlt or the MLT 瓦片 switch
// (kept in this browser like the token), else Mapbox Vector Tiles.
const TILES_KEY = 'onemap.tiles';
const tilesGiven = new URLSearchParams(location.search).get('tiles');
if (tilesGiven === 'mlt' || tilesGiven === 'mvt') localStorage.setItem(TILES_KEY, tilesGiven);
const useMlt = localStorage.getItem(TILES_KEY) === 'mlt';
const given = new URLSearchParams(location.search).get('token');
if (given) {
  localStorage.setItem(TOKEN_KEY, given);
  history.replaceState(null, '', location.pathname);
}
const token = localStorage.getItem(TOKEN_KEY);
const authHeaders = token ? { authorization: `Bearer ${token}` } : {};

function showLogin(message) {
  const form = document.getElementById('login');
  document.getElementById('login-message').textContent = message;
  form.hidden = false;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = document.getElementById('login-token').value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    location.reload();
  }, { once: true });
}

async function getJson(path, init = {}) {
  const r = await fetch(path, { ...init, headers: { accept: 'application/json', ...authHeaders, ...(init.headers || {}) } });
  if (r.status === 401) showLogin(token ? '令牌无效或已过期，请重新登录' : '请输入访问令牌');
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/** Same-origin requests (tiles, styles, glyphs) carry the token; nothing else does. */
function withToken(url) {
  if (!token || !url.startsWith(location.origin)) return undefined;
  return { url, headers: authHeaders };
}

async function cityBounds() {
  try {
    const tj = await getJson('/tiles/districts');
    const b = tj.bounds;
    if (Array.isArray(b) && b.length === 4 && b[0] < b[2] && b[1] < b[3]) return [[b[0], b[1]], [b[2], b[3]]];
  } catch (e) {
    recordError('city bounds', e);
  }
  return [[73, 18], [135, 54]]; // China, when the city is empty
}

/** The big-screen style; with MLT chosen, its tile sources ask this server for MLT tiles. */
async function bigScreenStyle() {
  if (!useMlt) return '/styles/dark.json';
  // The server writes its own address into the style's URLs.
  const style = await getJson('/styles/dark.json');
  for (const src of Object.values(style.sources)) {
    const url = src.type === 'vector' && typeof src.url === 'string' ? new URL(src.url, location.origin) : null;
    if (url && url.origin === location.origin && url.pathname.startsWith('/tiles/')) {
      url.searchParams.set('f', 'mlt');
      src.url = url.href;
      src.encoding = 'mlt';
    }
  }
  return style;
}

const tilesSwitch = document.getElementById('tiles-mlt');
tilesSwitch.checked = useMlt;
tilesSwitch.addEventListener('change', () => {
  localStorage.setItem(TILES_KEY, tilesSwitch.checked ? 'mlt' : 'mvt');
  location.reload();
});

const bounds = await cityBounds();
const map = new MapLibreMap({
  container: 'map',
  style: await bigScreenStyle(),
  bounds,
  fitBoundsOptions: { padding: { top: 40, bottom: 40, left: 40, right: 380 } },
  // Chinese labels are drawn with the machine's own CJK font, so no CJK glyphs are downloaded.
  localIdeographFontFamily: getComputedStyle(document.documentElement).getPropertyValue('--font').trim() || 'sans-serif',
  attributionControl: false,
  transformRequest: withToken,
  maxPitch: 0,
  dragRotate: false,
});
window.onemapMap = map;
map.touchZoomRotate.disableRotation();
map.on('error', (e) => recordError('map', e.error || e));

// Just-created and just-updated cases, drawn at once, before their tiles are refreshed.
const live = new Map(); // id -> { feature, at }

function liveData() {
  return { type: 'FeatureCollection', features: [...live.values()].map((v) => v.feature) };
}

function showLive() {
  const src = map.getSource('live');
  if (src) src.setData(liveData());
}

// Set once the style has loaded. Not map.isStyleLoaded(): that is false whenever tiles are
// loading, and no event or switch may be dropped then.
let mapReady = false;

map.on('load', () => {
  mapReady = true;
  map.addSource('live', { type: 'geojson', data: liveData() });
  const light = ['match', ['get', 'light'], 'green', LIGHT_COLOURS.green, 'yellow', LIGHT_COLOURS.yellow,
    'red', LIGHT_COLOURS.red, '#5dade2'];
  const closed = ['in', ['get', 'status'], ['literal', ['closed', 'voided', 'rejected']]];
  map.addLayer({
    id: 'live-case-halo', type: 'circle', source: 'live', metadata: { 'onemap:group': 'cases' },
    paint: { 'circle-radius': 14, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-width': 2,
      'circle-stroke-color': light, 'circle-stroke-opacity': 0.7 },
  });
  map.addLayer({
    id: 'live-case', type: 'circle', source: 'live', metadata: { 'onemap:group': 'cases' },
    paint: { 'circle-radius': 6, 'circle-color': ['case', closed, '#3c4a5c', light],
      'circle-stroke-color': '#e6f4ff', 'circle-stroke-width': 1.5 },
  });
  addStaffLayers();
  addResourceLayers();
  applyLayerSwitches();
  map.on('click', 'case-point', (e) => casePopup(e.features[0].properties, e.lngLat));
  map.on('click', 'staff-point', (e) => staffPopup(e.features[0].properties, e.lngLat));
  map.on('click', 'live-case', (e) => casePopup(e.features[0].properties, e.lngLat));
  for (const id of ['case-point', 'live-case', 'sensor-point', 'staff-point']) {
    map.on('mouseenter', id, () => { map.getCanvas().style.cursor = 'pointer'; });
    map.on('mouseleave', id, () => { map.getCanvas().style.cursor = ''; });
  }
});

let popup = null;
const PHOTO_STEPS = { report: '上报', verify: '核实', handle: '处置后', check: '核查' };

/** A photo's bytes as an object URL: an <img> cannot send the bearer token. */
async function photoUrl(path) {
  const r = await fetch(path, { headers: authHeaders });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return URL.createObjectURL(await r.blob());
}

async function casePopup(p, lngLat) {
  if (popup) popup.remove();
  const el = document.createElement('div');
  el.className = 'case-popup';
  const title = document.createElement('div');
  title.textContent = `#${p.id} ${className(p.class_code)} · ${STATUS_NAMES[p.status] || p.status || ''}`
    + (p.description ? ` · ${p.description}` : '');
  el.append(title, planPicker({ case_id: Number(p.id), lon: lngLat.lng, lat: lngLat.lat }));
  popup = new Popup({ closeButton: true, maxWidth: '360px' }).setLngLat(lngLat).setDOMContent(el).addTo(map);
  // The case's photos (上报, 核实, 处置后, 核查), before and after, each with its step and a
  // mark when it was taken far from the case.
  try {
    const c = await getJson(`/api/v1/cases/${encodeURIComponent(p.id)}`);
    const media = c.media || [];
    el.dataset.photos = String(media.length);
    if (!media.length) return;
    const strip = document.createElement('div');
    strip.className = 'case-photos';
    el.append(strip);
    for (const m of media) {
      const fig = document.createElement('figure');
      const img = document.createElement('img');
      img.alt = PHOTO_STEPS[m.step] || m.step;
      img.src = await photoUrl(m.thumbnail_url);
      img.addEventListener('click', async () => window.open(await photoUrl(m.url), '_blank'));
      const cap = document.createElement('figcaption');
      cap.textContent = (PHOTO_STEPS[m.step] || m.step) + (m.far ? ` · 距案件 ${Math.round(m.distance_m)} 米` : '');
      if (m.far) cap.className = 'far';
      fig.append(img, cap);
      strip.append(fig);
    }
    el.dataset.photosShown = String(strip.querySelectorAll('img').length);
  } catch (e) {
    recordError('case photos', e);
  }
}

// ---------------------------------------------------------------------------------------------
// Supervisors on duty (在岗监督员): a GeoJSON source loaded once and kept by the feed
// (`staff.on_duty`, `staff.moved`, `staff.off_duty`), so a member moves on the screen as soon as
// a position lands; a click shows today's track (巡查轨迹).

const STAFF_ROLES = { supervisor: '监督员', collector: '信息采集员', worker: '处置人员' };
const staff = new Map(); // code -> { code, name, role, lon, lat, last_seen, grid_code }
let staffTotal = null;

function staffData() {
  return {
    type: 'FeatureCollection',
    features: [...staff.values()].filter((s) => Number.isFinite(s.lon) && Number.isFinite(s.lat)).map((s) => ({
      type: 'Feature', id: s.code, geometry: { type: 'Point', coordinates: [s.lon, s.lat] },
      properties: { code: s.code, name: s.name, role: s.role, last_seen: s.last_seen, grid_code: s.grid_code },
    })),
  };
}

function showStaff() {
  setText('count-staff', fmt.format(staff.size));
  setText('staff-total', staffTotal == null ? '' : `/ ${fmt.format(staffTotal)}`);
  const src = mapReady && map.getSource('staff-live');
  if (src) src.setData(staffData());
}

function addStaffLayers() {
  map.addSource('staff-live', { type: 'geojson', data: staffData() });
  map.addSource('staff-track', { type: 'geojson', data: { type: 'FeatureCollection', features: [] } });
  map.addLayer({
    id: 'staff-track-line', type: 'line', source: 'staff-track', metadata: { 'onemap:group': 'staff' },
    paint: { 'line-color': '#00e5ff', 'line-width': 3, 'line-opacity': 0.85, 'line-dasharray': [2, 1] },
  });
  map.addLayer({
    id: 'staff-point', type: 'circle', source: 'staff-live', metadata: { 'onemap:group': 'staff' },
    paint: { 'circle-radius': 7, 'circle-color': '#00e5ff', 'circle-stroke-color': '#003344', 'circle-stroke-width': 2 },
  });
  map.addLayer({
    id: 'staff-label', type: 'symbol', source: 'staff-live', metadata: { 'onemap:group': 'staff' }, minzoom: 14,
    layout: { 'text-field': ['get', 'name'], 'text-size': 12, 'text-offset': [0, 1.2], 'text-anchor': 'top' },
    paint: { 'text-color': '#bff8ff', 'text-halo-color': '#001018', 'text-halo-width': 1.5 },
  });
  showStaff();
}

async function refreshStaff() {
  try {
    const r = await getJson('/api/v1/staff?on_duty=true');
    staff.clear();
    for (const s of r.staff || []) staff.set(s.code, s);
    const all = await getJson('/api/v1/staff');
    staffTotal = all.count;
    showStaff();
  } catch (e) {
    console.warn('staff', e);
  }
}

function onStaff(e, onDuty) {
  const s = parse(e);
  if (!s || !s.staff) return;
  if (onDuty) {
    const was = staff.get(s.staff) || { code: s.staff };
    staff.set(s.staff, { ...was, name: s.name ?? was.name, role: s.role ?? was.role, lon: s.lon, lat: s.lat,
      last_seen: s.at, grid_code: s.grid_code });
  } else {
    staff.delete(s.staff);
  }
  showStaff();
}

async function staffPopup(p, lngLat) {
  if (popup) popup.remove();
  const el = document.createElement('div');
  el.className = 'staff-popup';
  el.textContent = `${STAFF_ROLES[p.role] || p.role || ''} ${p.name || p.code} · ${p.code}`
    + (p.grid_code ? ` · 网格 ${p.grid_code}` : '') + (p.last_seen ? ` · ${timeText(p.last_seen)}` : '');
  popup = new Popup({ closeButton: true }).setLngLat(lngLat).setDOMContent(el).addTo(map);
  try {
    const track = await getJson(`/api/v1/staff/${encodeURIComponent(p.code)}/track`);
    map.getSource('staff-track').setData({ type: 'FeatureCollection', features: track.geometry ? [track] : [] });
    const km = (track.properties.distance_m || 0) / 1000;
    el.textContent += ` · 今日轨迹 ${track.properties.points} 点 ${km.toFixed(2)} km`;
    el.dataset.trackPoints = String(track.properties.points);
  } catch (e) {
    recordError('staff track', e);
  }
}

// ---------------------------------------------------------------------------------------------
// 一键联动: a 启动预案 button on a case and on an alarm starts a plan there (shift leader,
// dispatcher); the open incidents are listed with each department's state and kept by the feed
// (`incident.created`, `incident.updated`, `incident.escalated`); a click shows the resources
// around one (cameras, staff on duty, the plan's components).

const INCIDENTS_MAX = 100;
const TASK_NAMES = { dispatched: '已派发', acked: '已签收', arrived: '已到场', done: '已完成' };
const incidents = new Map(); // id -> incident (open ones)
const incidentEl = document.getElementById('incident-list');
let plans = null; // the plans, loaded on first use

async function loadPlans() {
  if (!plans) plans = (await getJson('/api/v1/plans')).plans || [];
  return plans;
}

/** A 启动预案 button that opens a choice of plans and starts the chosen one at `at`. */
function planPicker(at) {
  const box = document.createElement('span');
  box.className = 'plan-picker';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'plan-start';
  button.textContent = '启动预案';
  box.append(button);
  button.addEventListener('click', async (e) => {
    e.stopPropagation();
    try {
      const list = await loadPlans();
      const select = document.createElement('select');
      select.className = 'plan-choice';
      select.append(new Option('选择预案…', ''), ...list.map((p) => new Option(p.name, p.code)));
      const go = document.createElement('button');
      go.type = 'button';
      go.className = 'plan-go';
      go.textContent = '启动';
      go.addEventListener('click', async (ev) => {
        ev.stopPropagation();
        if (!select.value) return;
        go.disabled = true;
        try {
          const r = await fetch('/api/v1/incidents', {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...authHeaders },
            body: JSON.stringify({ plan: select.value, ...at }),
          });
          const body = await r.json();
          if (!r.ok) throw new Error(body.detail || `HTTP ${r.status}`);
          upsertIncident(body);
          box.replaceChildren(document.createTextNode(`已启动 ${body.plan_name}`));
          box.dataset.incident = body.id;
        } catch (err) {
          recordError('start plan', err);
          box.append(document.createTextNode(` 启动失败: ${err.message}`));
        } finally {
          go.disabled = false;
        }
      });
      box.replaceChildren(select, go);
    } catch (err) {
      recordError('plans', err);
    }
  });
  return box;
}

/** The resources last listed around an incident: {count, text}, by incident id. */
const resourcesOf = new Map();

function renderIncidents(freshId) {
  for (const id of resourcesOf.keys()) if (!incidents.has(id)) resourcesOf.delete(id);
  const list = [...incidents.values()].sort((a, b) => Date.parse(b.opened_at) - Date.parse(a.opened_at));
  incidentEl.replaceChildren(...list.map((inc) => {
    const li = document.createElement('li');
    li.dataset.incidentId = inc.id;
    if (inc.id === freshId) li.className = 'fresh';
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = `${inc.plan_name}${inc.auto ? ' · 自动' : ''}`;
    const meta = document.createElement('span');
    meta.className = 'meta';
    const calls = (inc.webhooks || []).map((w) => ({ delivered: '已通知', pending: `通知中(${w.attempts})`, failed: '通知失败' }[w.status]));
    meta.textContent = [timeText(inc.opened_at), inc.grid_code ? `网格 ${inc.grid_code}` : '', ...calls].filter(Boolean).join(' · ');
    const tasks = document.createElement('span');
    tasks.className = 'tasks';
    for (const t of inc.tasks || []) {
      const b = document.createElement('span');
      b.className = `task ${t.status}${t.late && t.late.length ? ' late' : ''}`;
      b.dataset.dept = t.dept_code;
      b.dataset.status = t.status;
      b.textContent = `${t.role === 'lead' ? '★' : ''}${t.dept_name || t.dept_code} ${TASK_NAMES[t.status] || t.status}`;
      tasks.append(b);
    }
    li.append(title, meta, tasks);
    const res = resourcesOf.get(inc.id);
    if (res) {
      li.dataset.resources = String(res.count);
      const note = document.createElement('span');
      note.className = 'resources';
      note.textContent = res.text;
      li.append(note);
    }
    return li;
  }));
  setText('incident-count', incidents.size ? `(${incidents.size})` : '');
}

function upsertIncident(inc) {
  if (!inc || !inc.id) return;
  if (inc.status === 'open') incidents.set(inc.id, inc); else incidents.delete(inc.id);
  while (incidents.size > INCIDENTS_MAX) incidents.delete(incidents.keys().next().value);
  renderIncidents(inc.status === 'open' ? inc.id : undefined);
}

async function refreshIncidents() {
  try {
    const r = await getJson('/api/v1/incidents?open=true');
    incidents.clear();
    for (const inc of (r.incidents || []).slice(0, INCIDENTS_MAX)) incidents.set(inc.id, inc);
    renderIncidents();
  } catch (e) {
    console.warn('incidents', e);
  }
}

const NO_FEATURES = { type: 'FeatureCollection', features: [] };

function addResourceLayers() {
  map.addSource('resources', { type: 'geojson', data: NO_FEATURES });
  map.addLayer({
    id: 'resource-point', type: 'circle', source: 'resources', metadata: { 'onemap:group': 'resources' },
    paint: {
      'circle-radius': 7,
      'circle-color': ['match', ['get', 'kind'], 'camera', '#b388ff', 'staff', '#00e5ff', '#ffb74d'],
      'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2,
    },
  });
}

incidentEl.addEventListener('click', async (e) => {
  const li = e.target.closest('li[data-incident-id]');
  const inc = li && incidents.get(li.dataset.incidentId);
  if (!inc) return;
  map.flyTo({ center: [inc.lon, inc.lat], zoom: Math.max(map.getZoom(), 16) });
  try {
    const r = await getJson(`/api/v1/incidents/${encodeURIComponent(inc.id)}/resources`);
    const point = (kind) => (x) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: [x.lon, x.lat] },
      properties: { kind, code: x.code, name: x.name, distance_m: x.distance_m } });
    const features = [...r.cameras.map(point('camera')), ...r.staff.map(point('staff')), ...r.components.map(point('component'))];
    if (mapReady) map.getSource('resources').setData({ type: 'FeatureCollection', features });
    // Kept per incident and drawn by the list, which the feed redraws on every incident update.
    resourcesOf.set(inc.id, { count: features.length,
      text: `周边 ${r.radius_m} 米: 视频 ${r.cameras.length} · 在岗人员 ${r.staff.length} · 部件 ${r.components.length}` });
    renderIncidents();
  } catch (err) {
    recordError('resources', err);
  }
});

// ---------------------------------------------------------------------------------------------
// Layer switches: each style layer names its group in metadata["onemap:group"].

const switches = [...document.querySelectorAll('#layers input[data-group]')];
function applyLayerSwitches() {
  const on = Object.fromEntries(switches.map((s) => [s.dataset.group, s.checked]));
  for (const layer of map.getStyle().layers) {
    const group = layer.metadata && layer.metadata['onemap:group'];
    if (group && group in on) map.setLayoutProperty(layer.id, 'visibility', on[group] ? 'visible' : 'none');
  }
}
for (const s of switches) s.addEventListener('change', () => { if (mapReady) applyLayerSwitches(); });

// ---------------------------------------------------------------------------------------------
// Hotspot analysis: Gi* of the last year's cases by unit grid. The overlay (the `hotspots`
// tile layer) shows the published analysis: the button publishes (a POST, for roles that may:
// admin, analyst, shift leader), and every big screen hears `hotspots.published` and redraws.

const hotspotButton = document.getElementById('hotspot-run');
const hotspotStatus = document.getElementById('hotspot-status');
hotspotButton.addEventListener('click', async () => {
  hotspotButton.disabled = true;
  hotspotStatus.textContent = '分析中…';
  try {
    const day = (d) => d.toISOString().slice(0, 10);
    const to = new Date();
    const from = new Date(to.getTime() - 364 * 24 * 3600 * 1000);
    const r = await getJson(`/api/v1/analysis/hotspots?unit=grid&method=gi_star&geometry=false&from=${day(from)}&to=${day(to)}`, { method: 'POST' });
    const hot = r.features.filter((f) => f.properties.bin >= 2).length;
    hotspotStatus.textContent = `热点网格 ${fmt.format(hot)}`;
    invalidate({ layer: 'hotspots', layers: ['hotspots'] });
  } catch (e) {
    recordError('hotspot analysis', e);
    hotspotStatus.textContent = '分析失败';
  } finally {
    hotspotButton.disabled = false;
  }
});

// ---------------------------------------------------------------------------------------------
// Counters

const fmt = new Intl.NumberFormat('zh-CN');
function setText(id, text) { document.getElementById(id).textContent = text; }

async function refreshSummary() {
  try {
    const s = await getJson('/api/v1/cases/summary');
    setText('count-today', fmt.format(s.today ?? 0));
    setText('count-open', fmt.format(s.open ?? 0));
    setText('count-overdue', fmt.format(s.overdue ?? 0));
    const rate = s.closure_rate_month;
    setText('count-rate', typeof rate === 'number' ? `${(rate * 100).toFixed(1)}%` : '—');
  } catch (e) {
    console.warn('summary', e);
  }
}

let summaryTimer = null;
function summarySoon() {
  // Coalesce bursts of events into one request a second.
  if (summaryTimer) return;
  summaryTimer = setTimeout(() => { summaryTimer = null; refreshSummary(); }, 1000);
}

// ---------------------------------------------------------------------------------------------
// The case list (最新案件)

let cases = []; // newest first, at most LIST_MAX
const listEl = document.getElementById('case-list');

function className(code) { return CLASS_NAMES[code] ? `${CLASS_NAMES[code]}` : (code || ''); }

function timeText(iso) {
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return '';
  const now = new Date();
  const hm = t.toLocaleTimeString('zh-CN', { hour: '2-digit', minute: '2-digit', hour12: false });
  return t.toDateString() === now.toDateString() ? hm : `${t.getMonth() + 1}月${t.getDate()}日 ${hm}`;
}

function renderList(freshId) {
  const items = cases.map((c) => {
    const li = document.createElement('li');
    li.dataset.caseId = String(c.id);
    if (c.id === freshId) li.className = 'fresh';
    const light = document.createElement('span');
    light.className = `light ${c.light || ''}`;
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = `${className(c.class_code)}${c.description ? ` · ${c.description}` : ''}`;
    const state = document.createElement('span');
    state.className = 'state';
    state.textContent = STATUS_NAMES[c.status] || c.status || '';
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = [`#${c.id}`, timeText(c.reported_at), SOURCE_NAMES[c.source] || c.source,
      c.grid_code ? `网格 ${c.grid_code}` : ''].filter(Boolean).join(' · ');
    li.append(light, title, state, meta);
    return li;
  });
  listEl.replaceChildren(...items);
  setText('case-count', cases.length ? `(${cases.length})` : '');
}

// One delegated listener for the whole list, so re-rendering adds none.
listEl.addEventListener('click', (e) => {
  const li = e.target.closest('li[data-case-id]');
  const c = li && cases.find((x) => String(x.id) === li.dataset.caseId);
  if (c && Number.isFinite(c.lon) && Number.isFinite(c.lat)) {
    map.flyTo({ center: [c.lon, c.lat], zoom: Math.max(map.getZoom(), 17) });
  }
});

function reportedMs(c) { const t = Date.parse(c.reported_at); return Number.isNaN(t) ? 0 : t; }

async function refreshList() {
  try {
    const r = await getJson(`/api/v1/cases?limit=${LIST_MAX}`);
    cases = (r.cases || []).slice(0, LIST_MAX);
    renderList();
  } catch (e) {
    console.warn('cases', e);
  }
}

function upsertCase(c, created) {
  if (c == null || c.id == null) return;
  const i = cases.findIndex((x) => x.id === c.id);
  if (i >= 0) {
    cases[i] = { ...cases[i], ...c };
  } else if (created || cases.length < LIST_MAX || reportedMs(c) >= reportedMs(cases[cases.length - 1])) {
    cases.push(c);
  } else {
    return; // an update of a case too old for the list
  }
  cases.sort((a, b) => reportedMs(b) - reportedMs(a) || b.id - a.id);
  cases.length = Math.min(cases.length, LIST_MAX);
  renderList(created ? c.id : undefined);
}

// ---------------------------------------------------------------------------------------------
// The alarm list (实时告警): the raised alarms, most severe first, kept by the feed.

const LEVEL_NAMES = { blue: '蓝色', yellow: '黄色', orange: '橙色', red: '红色' };
const LEVEL_RANK = { blue: 1, yellow: 2, orange: 3, red: 4 };
const alarms = new Map(); // id -> alarm
const pickers = new Map(); // alarm id -> its 启动预案 picker
const alarmEl = document.getElementById('alarm-list');

function renderAlarms(freshId) {
  const list = [...alarms.values()].sort((a, b) =>
    (LEVEL_RANK[b.level] || 0) - (LEVEL_RANK[a.level] || 0) || Date.parse(b.raised_at) - Date.parse(a.raised_at));
  alarmEl.replaceChildren(...list.map((a) => {
    const li = document.createElement('li');
    li.dataset.alarmId = String(a.id);
    li.dataset.sensor = a.sensor;
    li.dataset.level = a.level;
    if (a.id === freshId) li.className = 'fresh';
    const level = document.createElement('span');
    level.className = `level ${a.level}`;
    const title = document.createElement('span');
    title.className = 'title';
    title.textContent = `${LEVEL_NAMES[a.level] || a.level}告警 · ${a.name || a.sensor}`;
    const state = document.createElement('span');
    state.className = 'state';
    state.textContent = a.acked_at ? '已确认' : '未确认';
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = [`${a.last_value ?? a.value} ${a.unit || ''}`.trim(), timeText(a.raised_at),
      a.case_id != null ? `案件 #${a.case_id}` : ''].filter(Boolean).join(' · ');
    li.append(level, title, state, meta);
    if (Number.isFinite(a.lon) && Number.isFinite(a.lat)) {
      // The same picker across re-renders, so a choice under way survives the alarm's updates.
      if (!pickers.has(a.id)) pickers.set(a.id, planPicker({ alarm_id: a.id, lon: a.lon, lat: a.lat }));
      li.append(pickers.get(a.id));
    }
    return li;
  }));
  for (const id of pickers.keys()) if (!alarms.has(id)) pickers.delete(id);
  setText('alarm-count', alarms.size ? `(${alarms.size})` : '');
}

alarmEl.addEventListener('click', (e) => {
  if (e.target.closest('.plan-picker')) return;
  const li = e.target.closest('li[data-alarm-id]');
  const a = li && alarms.get(Number(li.dataset.alarmId));
  if (a && Number.isFinite(a.lon) && Number.isFinite(a.lat)) {
    map.flyTo({ center: [a.lon, a.lat], zoom: Math.max(map.getZoom(), 16) });
  }
});

async function refreshAlarms() {
  try {
    const r = await getJson('/api/v1/alarms?active=true');
    alarms.clear();
    for (const a of r.alarms || []) alarms.set(a.id, a);
    renderAlarms();
  } catch (e) {
    console.warn('alarms', e);
  }
}

function onAlarm(e, gone) {
  const a = parse(e);
  if (!a || a.id == null) return;
  if (gone) alarms.delete(a.id); else alarms.set(a.id, { ...alarms.get(a.id), ...a });
  renderAlarms(gone ? undefined : a.id);
}

function drawLive(c) {
  if (!Number.isFinite(c.lon) || !Number.isFinite(c.lat)) return;
  live.delete(c.id); // re-insert so the map's order is oldest first
  live.set(c.id, {
    at: Date.now(),
    feature: {
      type: 'Feature', id: c.id, geometry: { type: 'Point', coordinates: [c.lon, c.lat] },
      properties: { id: c.id, class_code: c.class_code, status: c.status, light: c.light, description: c.description },
    },
  });
  while (live.size > LIVE_MAX) live.delete(live.keys().next().value);
  showLive();
}

setInterval(() => {
  const old = Date.now() - LIVE_TTL_MS;
  let changed = false;
  for (const [id, v] of live) if (v.at < old) { live.delete(id); changed = true; }
  if (changed) showLive();
}, 60 * 1000);

// ---------------------------------------------------------------------------------------------
// Tile refresh on `tiles.invalidated`: only the tiles in view that changed, coalesced over a
// moment. Always by tile id: map.refreshTiles(source) without ids leaves tiles that had failed
// (the server was away) stuck in "loading" in maplibre-gl 6.17, while refreshing them by id
// loads them afresh. Tiles MapLibre keeps out of view are not refreshed by id, so a source
// changed out of view is revalidated when the view next moves (unchanged tiles cost a 304).

const pendingTiles = new Map(); // source id -> Set("z/x/y")
const changedOutOfView = new Set(); // source ids
let tilesTimer = null;

function lon2x(lon, z) { return Math.floor(((lon + 180) / 360) * 2 ** z); }
function lat2y(lat, z) {
  const r = (Math.max(-85.0511, Math.min(85.0511, lat)) * Math.PI) / 180;
  return Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * 2 ** z);
}

/** Tile zooms the map may show now: the covering zoom, parents kept as placeholders, children. */
function zoomsInUse() {
  const z = Math.floor(map.getZoom());
  return [z - 2, z - 1, z, z + 1].filter((x) => x >= 0);
}

function viewBox() {
  const b = map.getBounds();
  return [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()];
}

/** Adds the ids of the tiles at `zooms` that meet `b` to `set`. */
function addTiles(set, b, zooms) {
  for (const z of zooms) {
    const n = 2 ** z;
    const clamp = (v) => Math.max(0, Math.min(n - 1, v));
    const [x0, x1] = [clamp(lon2x(b[0], z)), clamp(lon2x(b[2], z))];
    const [y0, y1] = [clamp(lat2y(b[3], z)), clamp(lat2y(b[1], z))];
    for (let x = x0; x <= x1 && set.size < REFRESH_TILES_MAX; x++) {
      for (let y = y0; y <= y1 && set.size < REFRESH_TILES_MAX; y++) set.add(`${z}/${x}/${y}`);
    }
  }
}

function refreshSoon() {
  if (!tilesTimer) tilesTimer = setTimeout(flushTiles, 150);
}

function invalidate(ev) {
  const layers = Array.isArray(ev.layers) ? ev.layers : [ev.layer];
  const sources = new Set(layers.map((l) => SOURCE_OF[l]).filter(Boolean));
  const inUse = zoomsInUse();
  const zooms = Array.isArray(ev.zooms) ? ev.zooms.filter((z) => inUse.includes(z)) : inUse;
  const view = viewBox();
  const b = Array.isArray(ev.bbox) && ev.bbox.length === 4 ? ev.bbox : [-180, -85, 180, 85];
  const inView = [Math.max(b[0], view[0]), Math.max(b[1], view[1]), Math.min(b[2], view[2]), Math.min(b[3], view[3])];
  const within = b[0] >= view[0] && b[1] >= view[1] && b[2] <= view[2] && b[3] <= view[3];
  for (const src of sources) {
    if (!within) changedOutOfView.add(src);
    if (inView[0] > inView[2] || inView[1] > inView[3]) continue;
    if (!pendingTiles.has(src)) pendingTiles.set(src, new Set());
    addTiles(pendingTiles.get(src), inView, zooms);
  }
  refreshSoon();
}

function flushTiles() {
  tilesTimer = null;
  for (const [src, set] of pendingTiles) {
    if (!map.getSource(src) || !set.size) continue;
    try {
      map.refreshTiles(src, [...set].map((k) => { const [z, x, y] = k.split('/').map(Number); return { z, x, y }; }));
    } catch (e) {
      recordError(`refresh ${src}`, e);
    }
  }
  pendingTiles.clear();
}

/** Revalidates every tile in view of `sources`. */
function refreshView(sources) {
  const view = viewBox();
  const zooms = zoomsInUse();
  for (const src of sources) {
    if (!pendingTiles.has(src)) pendingTiles.set(src, new Set());
    addTiles(pendingTiles.get(src), view, zooms);
  }
  refreshSoon();
}

function reloadAllTiles() {
  const all = new Set(Object.values(SOURCE_OF));
  refreshView(all);
  for (const src of all) changedOutOfView.add(src);
}

map.on('moveend', () => {
  if (!changedOutOfView.size) return;
  refreshView([...changedOutOfView]);
  changedOutOfView.clear();
});

// ---------------------------------------------------------------------------------------------
// The live feed (SSE). EventSource reconnects by itself after a dropped connection (sending
// Last-Event-ID); when it gives up (an HTTP error), a new one is made with a growing delay.

const statusEl = document.getElementById('status');
const STATUS_TEXT = { live: '实时', connecting: '连接中', down: '已断开' };
function setStatus(s) {
  statusEl.className = `status ${s}`;
  document.getElementById('status-text').textContent = STATUS_TEXT[s];
  document.body.dataset.feed = s;
}

let source = null;
let retryMs = 1000;
// Once the feed is back after an interruption, everything it keeps up to date is reloaded: a
// new EventSource starts from now, and tiles that failed while the server was away stay blank
// until refreshed (unchanged ones cost a 304).
let missed = false;

function parse(e) {
  try { return JSON.parse(e.data); } catch { return null; }
}

function onCase(e, created) {
  const c = parse(e);
  if (!c) return;
  drawLive(c);
  upsertCase(c, created);
  summarySoon();
}

function resync() {
  refreshSummary();
  refreshList();
  refreshAlarms();
  refreshStaff();
  refreshIncidents();
  if (mapReady) reloadAllTiles();
}

function connect() {
  setStatus('connecting');
  // EventSource cannot send headers: the token rides in the query, as the API allows for SSE.
  const es = new EventSource(token ? `/api/v1/events?access_token=${encodeURIComponent(token)}` : '/api/v1/events');
  source = es;
  es.addEventListener('open', () => {
    setStatus('live');
    retryMs = 1000;
    if (missed) { missed = false; resync(); }
  });
  es.addEventListener('error', () => {
    if (source !== es) return;
    missed = true;
    if (es.readyState === EventSource.CLOSED) {
      setStatus('down');
      es.close();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 30000);
    } else {
      setStatus('connecting');
    }
  });
  es.addEventListener('case.created', (e) => onCase(e, true));
  es.addEventListener('case.updated', (e) => onCase(e, false));
  for (const name of ['alarm.raised', 'alarm.updated', 'alarm.acked']) es.addEventListener(name, (e) => onAlarm(e, false));
  es.addEventListener('alarm.cleared', (e) => onAlarm(e, true));
  for (const name of ['staff.on_duty', 'staff.moved']) es.addEventListener(name, (e) => onStaff(e, true));
  es.addEventListener('staff.off_duty', (e) => onStaff(e, false));
  for (const name of ['incident.created', 'incident.updated', 'incident.escalated']) {
    es.addEventListener(name, (e) => upsertIncident(parse(e)));
  }
  es.addEventListener('tiles.invalidated', (e) => { const ev = parse(e); if (ev && mapReady) invalidate(ev); });
  es.addEventListener('hotspots.published', () => { if (mapReady) invalidate({ layer: 'hotspots', layers: ['hotspots'] }); });
  es.addEventListener('resync', () => resync());
}

// ---------------------------------------------------------------------------------------------

const clock = document.getElementById('clock');
function tick() { clock.textContent = new Date().toLocaleString('zh-CN', { hour12: false }); }
tick();
setInterval(tick, 1000);

refreshSummary();
refreshList();
refreshAlarms();
refreshStaff();
refreshIncidents();
setInterval(refreshSummary, SUMMARY_EVERY_MS);
connect();
