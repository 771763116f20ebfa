// The operator console in a real browser (Debian's chromium via playwright-core): sign in, see
// both cameras' thumbnails and the tally border, switch by click and by key, and watch the
// program preview (hls.js) play across switches without fatal errors or stalls.
//
//   cargo build && (cd tests/browser && npm ci) && node --test tests/browser/
//
// TALLY_BIN picks the binary (default target/debug/tally); nothing is built here. Screenshots go
// to artifacts/console/. With CI=true a missing chromium, ffmpeg or playwright-core fails the test;
// otherwise it is skipped with a loud message.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';

import * as h from './harness.mjs';

const SHOTS = join(h.ROOT, 'artifacts', 'console');
const SWITCH_GAP_MS = 8000; // between the switches of the playback phase
const MIN_PLAYED_S = 30;
const MAX_STALL_MS = 500;
const FREEZE_MS = 200; // currentTime standing still this long (while playing) counts as a stall

const missing = h.missingTools();
try {
  await import('playwright-core');
} catch {
  missing.push('playwright-core (run `npm ci` in tests/browser)');
}
const ci = process.env.CI === 'true';
let skip = false;
if (missing.length) {
  const message = `browser test: missing ${missing.join(', ')}`;
  if (!ci) {
    console.error(`\n*** SKIPPED ${message} (set CI=true to make this a failure) ***\n`);
    skip = `SKIPPED: ${message}`;
  }
}

after(() => h.stopAll());

/** Runs in the page before the console's scripts: watches the program <video> and hls.js. */
function instrument() {
  const probe = {
    started: null, // performance.now() of the first `playing`
    waitingSince: null,
    waits: [], // ms from each `waiting` to the next `playing`
    freezes: [], // ms of each period where currentTime stood still while playing
    errors: [], // every hls.js error: { fatal, type, details }
    latency: [], // hls.latency samples (s)
    wallLatency: [], // now - hls.playingDate samples (s): glass latency via PROGRAM-DATE-TIME
    hls: null,
  };
  window.__probe = probe;
  window.addEventListener('tally:hls', (e) => {
    const { hls, Hls } = e.detail;
    probe.hls = hls;
    hls.on(Hls.Events.ERROR, (_, d) => probe.errors.push({ fatal: d.fatal, type: d.type, details: d.details }));
  });
  const isProgram = (e) => e.target instanceof HTMLVideoElement && e.target.id === 'program';
  document.addEventListener(
    'waiting',
    (e) => {
      if (isProgram(e) && probe.started !== null) probe.waitingSince ??= performance.now();
    },
    true,
  );
  document.addEventListener(
    'playing',
    (e) => {
      if (!isProgram(e)) return;
      probe.started ??= performance.now();
      if (probe.waitingSince !== null) probe.waits.push(performance.now() - probe.waitingSince);
      probe.waitingSince = null;
    },
    true,
  );
  let last = null; // { media, wall } when currentTime last moved
  let frozenSince = null;
  setInterval(() => {
    const video = document.getElementById('program');
    if (!video || probe.started === null || video.paused) return;
    const now = performance.now();
    if (last === null || video.currentTime !== last.media) {
      if (frozenSince !== null && now - frozenSince >= 0) probe.freezes.push(now - frozenSince);
      frozenSince = null;
      last = { media: video.currentTime, wall: now };
    } else if (frozenSince === null) {
      frozenSince = last.wall;
    }
    const hls = probe.hls;
    if (hls && Number.isFinite(hls.latency) && hls.latency > 0) probe.latency.push(hls.latency);
    if (hls?.playingDate) probe.wallLatency.push((Date.now() - hls.playingDate.getTime()) / 1000);
  }, 50);
}

/** Starts a measurement window: what the probe saw so far is dropped. */
async function resetProbe(page) {
  return page.evaluate(() => {
    const p = window.__probe;
    Object.assign(p, { waits: [], freezes: [], errors: [], latency: [], wallLatency: [] });
    p.waitingSince = null;
    return { media: document.getElementById('program').currentTime, wall: performance.now() };
  });
}

async function readProbe(page, since) {
  return page.evaluate(({ since, freezeMs }) => {
    const p = window.__probe;
    const video = document.getElementById('program');
    const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
    const stalls = [...p.freezes.filter((ms) => ms >= freezeMs), ...p.waits];
    return {
      playedS: video.currentTime - since.media,
      wallS: (performance.now() - since.wall) / 1000,
      stalls: stalls.length,
      longestStallMs: Math.round(Math.max(0, ...p.freezes, ...p.waits, p.waitingSince ? performance.now() - p.waitingSince : 0)),
      waits: p.waits.length,
      fatal: p.errors.filter((e) => e.fatal),
      nonFatal: p.errors.filter((e) => !e.fatal).map((e) => e.details),
      latencyS: mean(p.latency.slice(-40)),
      wallLatencyS: mean(p.wallLatency.slice(-40)),
      dropped: video.getVideoPlaybackQuality?.().droppedVideoFrames ?? null,
    };
  }, { since, freezeMs: FREEZE_MS });
}

const tile = (camera) => `.tile[data-camera="${camera}"]`;
const logRows = (page) => page.locator('#switches li:not(.empty)').count();

async function expectProgram(page, camera, rowsBefore) {
  await page.waitForSelector(`${tile(camera)}[data-tally="program"]`, { timeout: 12_000 });
  assert.equal(await page.locator('.tile[data-tally="program"]').count(), 1, 'exactly one tile is on program');
  await h.until(`switch log row for ${camera}`, async () => (await logRows(page)) > rowsBefore, 5000);
  const newest = await page.locator('#switches li:first-child .to').textContent();
  assert.equal(newest, h.CAMERAS.find((c) => c.id === camera).name, 'the newest switch log row');
}

test('operator console in chromium', { skip, timeout: 180_000 }, async (t) => {
  if (missing.length) assert.fail(`browser test: missing ${missing.join(', ')} (CI=true)`);
  mkdirSync(SHOTS, { recursive: true });

  const tally = await h.startTally();
  const api = async (path) => {
    const response = await fetch(`${tally.base}${path}`, { headers: { Authorization: `Bearer ${h.TOKEN}` } });
    assert.equal(response.status, 200, `${path}: ${response.status}`);
    return response.json();
  };

  // The page loads without the token; the API still refuses without it.
  const page0 = await fetch(`${tally.base}/`);
  assert.equal(page0.status, 200);
  assert.match(page0.headers.get('content-type'), /^text\/html/);
  assert.equal((await fetch(`${tally.base}/api/events`)).status, 401, 'the API needs the token');
  assert.equal((await fetch(`${tally.base}/no-such-page`)).status, 401, 'the fallback needs the token');

  // cam1 first, so it is the camera on program (auto); then cam2.
  const [cam1, cam2] = h.CAMERAS;
  const publishers = [h.startPublisher(cam1, tally.rtmp, 80)];
  await h.until('cam1 on program', async () => (await api('/api/events/demo')).active_camera === 'cam1', 20_000);
  publishers.push(h.startPublisher(cam2, tally.rtmp, 80));
  await h.until('cam2 live', async () => (await api('/api/events/demo/cameras/cam2')).status === 'live', 20_000);

  const browser = await h.launchBrowser({ width: 1280, height: 800 });
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) pageErrors.push(m.text());
  });
  await page.addInitScript(instrument);

  try {
    await t.test('sign in', async () => {
      await page.goto(`${tally.base}/`);
      await page.waitForSelector('#view-signin:not([hidden])');
      await page.screenshot({ path: join(SHOTS, '1-sign-in.png') });
      await page.fill('#token', 'wrong-token');
      await page.press('#token', 'Enter');
      await page.waitForSelector('#signin-error:text("Wrong token")');
      await page.fill('#token', h.TOKEN);
      await page.press('#token', 'Enter');
      await page.waitForSelector('.event-card');
      assert.equal(await page.evaluate(() => sessionStorage.getItem('tally.token')), h.TOKEN);
    });

    await t.test('event view: thumbnails, tally on the program camera, preview playing', async () => {
      await page.click('.event-card[href="#/events/demo"]');
      await page.waitForSelector('#link-state[data-up="true"]');
      for (const camera of [cam1, cam2]) {
        await h.until(
          `${camera.id} thumbnail`,
          () =>
            page.$eval(`${tile(camera.id)} img`, (img) => img.src.startsWith('blob:') && img.complete && img.naturalWidth > 0),
          15_000,
        );
      }
      await page.waitForSelector(`${tile('cam1')}[data-tally="program"]`);
      assert.equal(await page.getAttribute(tile('cam2'), 'data-tally'), '');
      await h.until('program preview playing', () => page.evaluate(() => window.__probe.started !== null), 20_000);
      await page.mouse.move(1, 790); // no hover on a tile in the screenshots
      await page.screenshot({ path: join(SHOTS, '2-event.png') });
    });

    // Playback phase: five switches, 8 s apart; the first by click, the second by key (1-9).
    const since = await resetProbe(page);
    const switches = [
      ['cam2', 'click'],
      ['cam1', 'key'],
      ['cam2', 'click'],
      ['cam1', 'key'],
      ['cam2', 'key'],
    ];
    for (const [index, [camera, how]] of switches.entries()) {
      await t.test(`switch ${index + 1} to ${camera} by ${how}`, async () => {
        const rows = await logRows(page);
        const started = Date.now();
        if (how === 'click') await page.click(tile(camera));
        else await page.keyboard.press(camera === 'cam1' ? '1' : '2');
        await expectProgram(page, camera, rows);
        if (index === 0) await page.screenshot({ path: join(SHOTS, '3-after-switch.png') });
        await h.sleep(Math.max(0, SWITCH_GAP_MS - (Date.now() - started)));
      });
    }

    await t.test('program preview played through the switches', async () => {
      // Keep playing until the window holds at least MIN_PLAYED_S of media.
      await h.until('enough playback', async () => (await readProbe(page, since)).playedS >= MIN_PLAYED_S + 1, 20_000, 500);
      const r = await readProbe(page, since);
      const summary =
        `console browser test: played ${r.playedS.toFixed(1)} s in ${r.wallS.toFixed(1)} s across ${switches.length} switches; ` +
        `stalls ${r.stalls}, longest stall ${r.longestStallMs} ms, fatal errors ${r.fatal.length}, ` +
        `non-fatal errors ${r.nonFatal.length}${r.nonFatal.length ? ` (${[...new Set(r.nonFatal)].join(', ')})` : ''}, ` +
        `latency ${r.latencyS?.toFixed(2)} s behind the live edge (hls.latency), ` +
        `${r.wallLatencyS?.toFixed(2)} s behind wall clock (PROGRAM-DATE-TIME), dropped frames ${r.dropped}`;
      console.log(summary);
      assert.deepEqual(r.fatal, [], 'no fatal hls.js errors');
      assert.ok(r.longestStallMs <= MAX_STALL_MS, `longest stall ${r.longestStallMs} ms > ${MAX_STALL_MS} ms`);
      assert.ok(r.playedS >= MIN_PLAYED_S, `played ${r.playedS} s`);
      const log = await api('/api/events/demo/switches');
      assert.ok(log.filter((s) => s.reason === 'operator').length >= switches.length, 'switch log has every switch');
    });

    await t.test('tablet viewport', async () => {
      await page.setViewportSize({ width: 1024, height: 768 });
      await h.sleep(1500); // a thumbnail refresh at the new size
      const boxes = await page.$$eval('.tile', (tiles) => tiles.map((t) => t.getBoundingClientRect().right));
      assert.ok(Math.max(...boxes) <= 1024, 'tiles fit the tablet width');
      await page.screenshot({ path: join(SHOTS, '4-tablet.png') });
    });

    assert.deepEqual(pageErrors, [], 'no page errors or CSP violations');
  } catch (e) {
    await page.screenshot({ path: join(SHOTS, 'failure.png') }).catch(() => {});
    const logs = [tally.process, ...publishers].map((p) => `--- ${p.what}\n${h.tail(p)}`).join('\n');
    e.message += `\n${logs}`;
    throw e;
  } finally {
    await browser.close().catch(() => {});
    await h.stopAll();
  }
});
