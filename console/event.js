// The event view: camera tiles with tally borders, one-click (or 1-9) switching, the program
// preview and the switch log. State arrives over the WebSocket; only thumbnails are fetched on a
// timer.

import { api, fetchImage, eventPath, subscribe } from './api.js';
import { Player } from './player.js';
import { $, fromTemplate, toast, copyText, fmt } from './ui.js';

const THUMB_MS = 1000;
const LOG_ROWS = 100;

export class EventView {
  /** `onHeader({ name, status, link })` keeps the top bar in step. */
  constructor(id, { onHeader }) {
    this.id = id;
    this.onHeader = onHeader;
    this.event = null; // the event JSON, kept current from WebSocket messages
    this.tiles = new Map(); // camera id -> { el, img, url, busy }
    this.switches = [];
    this.link = { up: false };
    this.grid = $('grid');
    this.player = new Player($('program'), {
      onStats: (s) => this.showPlayerStats(s),
      onNote: (note) => this.note(note),
    });
  }

  start() {
    this.grid.replaceChildren();
    $('switches').replaceChildren();
    this.socket = subscribe(this.id, {
      onMessage: (m) => this.receive(m),
      onLink: (link) => {
        this.link = link;
        this.header();
      },
    });
    this.thumbTimer = setInterval(() => this.refreshThumbnails(), THUMB_MS);
    this.onKey = (e) => this.key(e);
    document.addEventListener('keydown', this.onKey);
  }

  stop() {
    this.socket?.close();
    clearInterval(this.thumbTimer);
    document.removeEventListener('keydown', this.onKey);
    this.player.destroy();
    clearTimeout(this.reloadTimer);
    for (const tile of this.tiles.values()) if (tile.url) URL.revokeObjectURL(tile.url);
    this.tiles.clear();
  }

  // ---- state from the server ---------------------------------------------------------------

  receive(m) {
    const event = this.event;
    if (m.type === 'hello') {
      this.load(m.event);
      return this.loadSwitches(); // anything may have happened while we were away
    }
    if (!event) return;
    const camera = (id) => event.cameras.find((c) => c.id === id);
    switch (m.type) {
      case 'camera_live':
      case 'camera_offline':
        if (!camera(m.camera)) return this.reload();
        camera(m.camera).status = m.type === 'camera_live' ? 'live' : 'offline';
        this.reloadSoon(); // warnings depend on which cameras are live
        break;
      case 'switch_pending':
        event.pending_camera = m.camera;
        break;
      case 'switch_cancelled':
        if (event.pending_camera === m.camera) event.pending_camera = null;
        if (!/supersed/.test(m.reason)) toast(`Switch to ${this.name(m.camera)} cancelled: ${m.reason}`, 'error');
        break;
      case 'camera_switched':
        event.active_camera = m.to;
        if (event.pending_camera === m.to) event.pending_camera = null;
        this.logSwitch({ at: m.at, from: m.from, to: m.to, reason: m.reason });
        this.reloadSoon(); // warnings are relative to the camera on program
        break;
      case 'event_status':
        event.status = m.status;
        break;
      case 'camera_warning':
        if (camera(m.camera)) camera(m.camera).warnings = m.warnings;
        break;
      case 'camera_stats': {
        const ids = new Set(m.cameras.map((c) => c.camera));
        if (m.cameras.some((c) => !camera(c.camera)) || event.cameras.some((c) => !ids.has(c.id))) {
          return this.reload(); // a camera was added or removed elsewhere
        }
        for (const { camera: id, ...stats } of m.cameras) Object.assign(camera(id), stats);
        break;
      }
      case 'lagged':
        return this.socket.resync(); // missed messages: a fresh hello has the whole state
      default:
        return;
    }
    this.render();
  }

  /** Takes a whole event (from `hello` or a GET) and redraws. */
  load(event) {
    this.event = event;
    this.render();
  }

  async reload() {
    try {
      this.load(await api(eventPath(this.id)));
    } catch (e) {
      toast(`Reloading the event failed: ${e.message}`, 'error');
    }
  }

  reloadSoon() {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.reload(), 300);
  }

  async loadSwitches() {
    try {
      this.mergeSwitches(await api(eventPath(this.id, 'switches')));
    } catch (e) {
      toast(`Loading the switch log failed: ${e.message}`, 'error');
    }
  }

  logSwitch(row) {
    this.mergeSwitches([row]);
  }

  /** Adds rows to the log, newest first. A row from the WebSocket and the same switch read back
   * from the log can differ by a millisecond in `at`, and either may arrive first. */
  mergeSwitches(rows) {
    const same = (a, b) => a.to === b.to && a.from === b.from && Math.abs(Date.parse(a.at) - Date.parse(b.at)) < 250;
    for (const row of rows) {
      if (!this.switches.some((known) => same(known, row))) this.switches.push(row);
    }
    this.switches.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
    this.renderSwitches();
  }

  // ---- rendering -------------------------------------------------------------------------

  name(id) {
    return this.event?.cameras.find((c) => c.id === id)?.name || id || '–';
  }

  header() {
    this.onHeader({ name: this.event?.name ?? this.id, status: this.event?.status, link: this.link });
  }

  render() {
    const event = this.event;
    this.header();
    const seen = new Set();
    event.cameras.forEach((camera, index) => {
      seen.add(camera.id);
      let tile = this.tiles.get(camera.id);
      if (!tile) {
        tile = this.makeTile(camera.id);
        this.tiles.set(camera.id, tile);
      }
      if (this.grid.children[index] !== tile.el) this.grid.insertBefore(tile.el, this.grid.children[index] ?? null);
      this.renderTile(tile, camera, index);
    });
    for (const [id, tile] of this.tiles) {
      if (seen.has(id)) continue;
      tile.el.remove();
      if (tile.url) URL.revokeObjectURL(tile.url);
      this.tiles.delete(id);
    }
    this.grid.dataset.count = String(event.cameras.length);
    this.renderSetup();
    if (['live', 'paused', 'ended'].includes(event.status)) this.player.play(event.program_url);
    else this.note('Waiting for the first camera…');
  }

  note(text) {
    $('video-note').textContent = text;
    $('video-note').hidden = !text;
  }

  makeTile(id) {
    const el = fromTemplate('tile-template');
    el.dataset.camera = id;
    el.addEventListener('click', (e) => {
      if (e.detail > 0) el.blur(); // a mouse or touch press leaves no focus ring next to the tally border
      this.switchTo(id);
    });
    const img = el.querySelector('img');
    return { el, img, url: null, busy: false, retryAt: 0 };
  }

  renderTile(tile, camera, index) {
    const { el } = tile;
    const event = this.event;
    const tally = event.active_camera === camera.id ? 'program' : event.pending_camera === camera.id ? 'pending' : '';
    el.dataset.tally = tally;
    el.dataset.status = camera.status;
    el.classList.toggle('program', tally === 'program');
    el.classList.toggle('pending', tally === 'pending');
    el.disabled = camera.status !== 'live';
    el.title = index < 9 ? `Press ${index + 1} or click to put ${camera.name} on program` : '';
    el.querySelector('.keycap').textContent = index < 9 ? String(index + 1) : '';
    el.querySelector('.tally-label').textContent = tally === 'program' ? 'On program' : tally === 'pending' ? 'Next' : '';
    el.querySelector('.cam-name').textContent = camera.name || camera.id;
    tile.img.alt = camera.name || camera.id;
    const status = el.querySelector('.cam-status');
    status.textContent = camera.status;
    status.dataset.status = camera.status;
    const live = camera.status === 'live';
    el.querySelector('.stat-bitrate').textContent = live ? fmt.bitrate(camera.bitrate) : '';
    el.querySelector('.stat-fps').textContent = live ? fmt.fps(camera.frame_rate) : '';
    el.querySelector('.stat-gop').textContent = live ? fmt.gop(camera.keyframe_interval) : '';
    el.querySelector('.stat-res').textContent = live ? fmt.resolution(camera.width, camera.height) : '';
    const warnings = tally === 'program' ? [] : camera.warnings ?? [];
    const box = el.querySelector('.cam-warnings');
    box.textContent = warnings.map((w) => `⚠ ${w}`).join('\n');
    box.hidden = !warnings.length;
  }

  renderSwitches() {
    const list = $('switches');
    list.replaceChildren(
      ...this.switches.slice(0, LOG_ROWS).map((row) => {
        const li = document.createElement('li');
        const time = document.createElement('time');
        time.dateTime = row.at;
        time.textContent = fmt.clock(row.at);
        const to = document.createElement('span');
        to.className = 'to';
        to.textContent = this.name(row.to);
        const meta = document.createElement('span');
        meta.className = 'meta';
        meta.dataset.reason = row.reason;
        meta.textContent = row.from ? `from ${this.name(row.from)} · ${row.reason}` : row.reason;
        li.append(time, to, meta);
        return li;
      }),
    );
    if (!this.switches.length) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'No switches yet';
      list.append(li);
    }
  }

  showPlayerStats({ latency, buffer, stalls }) {
    $('stat-latency').textContent = fmt.seconds(latency);
    $('stat-buffer').textContent = fmt.seconds(buffer);
    $('stat-stalls').textContent = String(stalls);
  }

  // ---- switching -------------------------------------------------------------------------

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    if (e.target.closest?.('input, textarea, select, dialog')) return;
    if ($('setup').open || !/^[1-9]$/.test(e.key)) return;
    const camera = this.event?.cameras[Number(e.key) - 1];
    if (camera) {
      e.preventDefault();
      this.switchTo(camera.id);
    }
  }

  async switchTo(id) {
    const event = this.event;
    if (!event) return;
    const camera = event.cameras.find((c) => c.id === id);
    if (event.active_camera === id && !event.pending_camera) return;
    if (camera?.status !== 'live') return toast(`${this.name(id)} is not live`, 'error');
    try {
      await api(`${eventPath(this.id, 'switch')}?wait=false`, { method: 'POST', body: { camera: id } });
    } catch (e) {
      toast(`Switch to ${this.name(id)} failed: ${e.message}`, 'error');
    }
  }

  // ---- thumbnails ------------------------------------------------------------------------

  /** Live cameras every second; an offline camera once (its last picture is kept). */
  refreshThumbnails() {
    if (document.hidden || !this.event) return;
    for (const camera of this.event.cameras) {
      const tile = this.tiles.get(camera.id);
      if (!tile || tile.busy || Date.now() < tile.retryAt) continue;
      if (camera.status === 'live' || (camera.status === 'offline' && !tile.url && !tile.tried)) {
        this.loadThumbnail(camera.id, tile);
      }
    }
  }

  async loadThumbnail(id, tile) {
    tile.busy = true;
    const width = Math.min(1280, Math.max(160, Math.ceil((tile.img.clientWidth * devicePixelRatio) / 160) * 160));
    try {
      const { blob, status, error } = await fetchImage(`${eventPath(this.id, 'cameras', id, 'thumbnail.jpg')}?width=${width}`);
      tile.tried = true;
      if (this.tiles.get(id) !== tile) return;
      if (!blob) {
        // 404: no keyframe yet (try again next tick); anything else will not fix itself soon.
        tile.retryAt = status === 404 ? 0 : Date.now() + 10_000;
        const note = tile.el.querySelector('.no-picture');
        note.textContent = status === 404 ? 'No picture yet' : `No picture: ${error}`;
        note.classList.toggle('error', status !== 404);
        return;
      }
      const url = URL.createObjectURL(blob);
      await new Promise((resolve) => {
        tile.img.onload = tile.img.onerror = resolve;
        tile.img.src = url;
      });
      if (tile.url) URL.revokeObjectURL(tile.url);
      tile.url = url;
      tile.el.classList.add('has-picture');
    } catch {
      // the next tick tries again
    } finally {
      tile.busy = false;
    }
  }

  // ---- cameras and OBS settings ----------------------------------------------------------

  renderSetup() {
    const list = $('setup-list');
    const rows = new Map([...list.children].map((li) => [li.dataset.camera, li]));
    for (const camera of this.event.cameras) {
      let li = rows.get(camera.id);
      if (!li) {
        li = this.makeSetupRow(camera.id);
        list.append(li);
      }
      rows.delete(camera.id);
      li.querySelector('.cam-name').textContent = camera.name;
      li.querySelector('.cam-id').textContent = camera.id;
      const status = li.querySelector('.cam-status');
      status.textContent = camera.status;
      status.dataset.status = camera.status;
      li.querySelector('.server').value = camera.ingest_url ?? '';
      li.querySelector('.key').value = camera.stream_key ?? '';
    }
    for (const li of rows.values()) li.remove();
  }

  makeSetupRow(id) {
    const li = fromTemplate('setup-row-template');
    li.dataset.camera = id;
    const key = li.querySelector('.key');
    const show = li.querySelector('.show-key');
    show.addEventListener('click', () => {
      const hidden = key.type === 'password';
      key.type = hidden ? 'text' : 'password';
      show.textContent = hidden ? 'Hide' : 'Show';
    });
    const copy = (input, what) => async () => {
      try {
        await copyText(input.value, input);
        toast(`${what} copied`);
      } catch {
        toast(`Could not copy the ${what.toLowerCase()}; select it and copy by hand`, 'error');
      }
    };
    li.querySelector('.copy-key').addEventListener('click', copy(key, 'Stream key'));
    li.querySelector('.copy-server').addEventListener('click', copy(li.querySelector('.server'), 'Server URL'));
    return li;
  }

  async addCamera(name, id) {
    const body = { name };
    if (id) body.id = id;
    const camera = await api(eventPath(this.id, 'cameras'), { method: 'POST', body });
    await this.reload();
    $('setup-list').querySelector(`[data-camera="${CSS.escape(camera.id)}"]`)?.scrollIntoView({ block: 'nearest' });
    return camera;
  }
}
