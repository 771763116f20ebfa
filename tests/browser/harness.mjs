// Processes for the browser test: a tally on free 127.0.0.1 ports with a throwaway config and
// store, ffmpeg publishers, and Debian's chromium through playwright-core. Everything started here
// is recorded and stopped by `stopAll`, on failure too.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = '/usr/bin/chromium';
export const TOKEN = 'browser-test-token';
export const EVENT = 'demo';
export const CAMERAS = [
  { id: 'cam1', name: 'Camera 1', key: 'browser-cam1-key', pattern: 'testsrc2', frequency: 440 },
  { id: 'cam2', name: 'Camera 2', key: 'browser-cam2-key', pattern: 'smptebars', frequency: 880 },
];

const children = new Set();
const scratch = new Set();

// Last resort if the test runner exits without the `after` hook (a crash): no orphans.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** Which of node, ffmpeg and chromium are missing. */
export function missingTools() {
  const missing = [];
  if (!existsSync(CHROMIUM)) missing.push(`chromium (${CHROMIUM})`);
  if (spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' }).status !== 0) missing.push('ffmpeg');
  return missing;
}

export function tallyBinary() {
  return resolve(ROOT, process.env.TALLY_BIN ?? 'target/debug/tally');
}

/** A port nobody listens on right now (bound to 0, then released). */
function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.add(dir);
  return dir;
}

/** Spawns a process whose output is kept (the tail) for failure messages. */
function start(what, command, args, options = {}) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  child.what = what;
  child.output = '';
  const keep = (chunk) => {
    child.output = (child.output + chunk).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((ok) => child.on('exit', (code, signal) => ok({ code, signal })));
  child.on('error', (e) => keep(`\nspawn error: ${e.message}`));
  children.add(child);
  child.exited.then(() => children.delete(child));
  return child;
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Starts tally with a fresh config and store (or again with those of `previous`); resolves
 * once the control port answers. */
export async function startTally(previous) {
  const binary = tallyBinary();
  if (!existsSync(binary)) throw new Error(`no tally binary at ${binary}: run cargo build (or set TALLY_BIN)`);
  if (previous) return launchTally(binary, previous.config, previous.ports);
  const dir = tempDir('tally-browser-');
  const [rtmp, http, control] = [await freePort(), await freePort(), await freePort()];
  const cameras = CAMERAS.map(
    (c) => `[[events.cameras]]\nid = "${c.id}"\nname = "${c.name}"\nstream_key = "${c.key}"\n`,
  ).join('\n');
  const config = `[rtmp]
listen = "127.0.0.1:${rtmp}"
[http]
listen = "127.0.0.1:${http}"
[control]
listen = "127.0.0.1:${control}"
token = "${TOKEN}"
[hls]
target_duration = "1s"
window = 6
[store]
path = "${join(dir, 'tally.db')}"

[[events]]
id = "${EVENT}"
name = "Browser test"

${cameras}`;
  const path = join(dir, 'config.toml');
  writeFileSync(path, config);
  return launchTally(binary, path, { rtmp, http, control });
}

async function launchTally(binary, config, ports) {
  const tally = start('tally', binary, ['--config', config], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'tally=info' },
  });
  const base = `http://127.0.0.1:${ports.control}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (tally.exitCode !== null) throw new Error(`tally exited at start:\n${tally.output}`);
    try {
      const response = await fetch(`${base}/api/health`, { headers: { Authorization: `Bearer ${TOKEN}` } });
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`tally did not answer within 20 s:\n${tally.output}`);
    await sleep(100);
  }
  return { process: tally, base, rtmp: `rtmp://127.0.0.1:${ports.rtmp}/live`, ports, config };
}

/** One ffmpeg publisher with a test pattern and tone; both use the same encoder settings so
 * the program's cuts are clean. */
export function startPublisher(camera, rtmpBase, seconds = 75) {
  // prettier-ignore
  const args = [
    '-hide_banner', '-loglevel', 'warning', '-nostdin',
    '-re', '-f', 'lavfi', '-i', `${camera.pattern}=size=640x360:rate=30`,
    '-f', 'lavfi', '-i', `sine=frequency=${camera.frequency}:sample_rate=48000`,
    '-t', String(seconds),
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency',
    '-g', '30', '-keyint_min', '30', '-sc_threshold', '0', '-b:v', '600k',
    '-c:a', 'aac', '-ar', '48000',
    '-f', 'flv', `${rtmpBase}/${camera.key}`,
  ];
  return start(`ffmpeg ${camera.id}`, 'ffmpeg', args);
}

/** Launches chromium with its own profile directory; returns a playwright BrowserContext. */
export async function launchBrowser(viewport) {
  const { chromium } = await import('playwright-core');
  const profile = tempDir('tally-chromium-');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    // prettier-ignore
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/** Stops every process started here (TERM, then KILL after 3 s) and removes temp dirs. */
export async function stopAll() {
  const running = [...children];
  for (const child of running) child.kill('SIGTERM');
  await Promise.race([Promise.all(running.map((c) => c.exited)), sleep(3000)]);
  for (const child of children) child.kill('SIGKILL');
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
  scratch.clear();
}

/** The last lines a process wrote, for failure messages. */
export function tail(child, lines = 30) {
  return child.output.trim().split('\n').slice(-lines).join('\n');
}

/** Polls `probe` until it returns a truthy value, or fails naming `what`. */
export async function until(what, probe, timeoutMs = 15_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(everyMs);
  }
}

export { sleep };
