// Motion-to-photon in a real browser: the system Chromium opens the page of a running `pirender serve`,
// drives the avatar with a fake camera (then a fake microphone) holding sharp, known events, and logs
// when each event was captured and when the avatar frames that show it were presented. The analysis
// (which frame shows the event, the percentiles) is benchmarks/motion_to_photon.py's.
//
//   node tests/browser/motion_to_photon.mjs URL OUT_JSON FAKE_Y4M FAKE_WAV SECONDS
//
// Camera: every frame of the page's own camera track (the one it sends) is read back as it arrives
// (requestVideoFrameCallback on a second <video> of that track: its captureTime, and the level of a
// marker square the y4m carries in its top-left corner), and every presented avatar frame as a 32x32
// grey thumbnail with its display time. Talk: the microphone track's level per 128-sample block (an
// AudioWorklet; stamped when the block reaches the page) and the page's mouth log (the mouth opening
// the server rendered into each presented frame, matched by RTP timestamp). All times: performance.now().
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromiumArgs, launchChromium, stepLogger } from './chromium.mjs';

const [url, outPath, fakeY4m, fakeWav, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg);
if (!url || !outPath || !fakeY4m || !fakeWav || !(seconds > 0)) {
  console.error('usage: node motion_to_photon.mjs URL OUT_JSON FAKE_Y4M FAKE_WAV SECONDS');
  process.exit(64);
}
for (const file of [fakeY4m, fakeWav]) {
  if (!existsSync(file)) {
    console.error(`${file} does not exist`);
    process.exit(64);
  }
}

const result = { url, seconds, ok: false, error: null, server_stats: [], steps: [] };
const t0 = Date.now();
const log = stepLogger(result, t0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let context = null;
let page = null;
const profileDir = mkdtempSync(join(tmpdir(), 'pirender-m2p-'));

const state = () => page.evaluate(() => pirender.state());

async function waitFor(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await state();
    if (check(last)) return last;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}; last state ${JSON.stringify(last)}`);
}

async function startMode(mode) {
  const before = (await state()).framesPresented;
  await page.evaluate((m) => pirender.start(m), mode);
  await waitFor(`a second of the ${mode} stream`, (s) => s.connected && s.mode === mode &&
    s.framesPresented > before + 25, 30_000);
  await sleep(2000);  // the first seconds: the tracker calibrating, the jitter buffer settling
}

const lastStats = (mode) => {
  const all = result.server_stats.filter((s) => s.mode === mode);
  return all.length ? all[all.length - 1] : null;
};

/** Logs every presented avatar frame (32x32 grey thumbnail, display time) into window.__avatarLog. */
async function watchAvatar(withThumbnails) {
  await page.evaluate((thumbs) => {
    const video = document.getElementById('avatar');
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 32;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    window.__avatarLog = [];
    window.__watching = true;
    const onFrame = (now, md) => {
      if (!window.__watching) return;
      const entry = { t: md.expectedDisplayTime ?? now, rtp: md.rtpTimestamp ?? null };
      if (thumbs) {
        ctx.drawImage(video, 0, 0, 32, 32);
        const rgba = ctx.getImageData(0, 0, 32, 32).data;
        const grey = new Array(32 * 32);
        for (let i = 0; i < grey.length; i++) grey[i] = Math.round((rgba[4 * i] + rgba[4 * i + 1] + rgba[4 * i + 2]) / 3);
        entry.px = grey;
      }
      window.__avatarLog.push(entry);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }, withThumbnails);
}

async function measureCamera() {
  await startMode('camera');
  await watchAvatar(true);
  await page.evaluate(() => {
    // the camera track the page sends, read back frame by frame: its capture time and the marker
    const video = document.createElement('video');
    video.muted = true;
    video.playsInline = true;
    video.srcObject = pirender.localStream();
    video.play();
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 4;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    window.__cameraLog = [];
    const onFrame = (now, md) => {
      if (!window.__watching) return;
      ctx.drawImage(video, 8, 8, 16, 16, 0, 0, 4, 4);  // inside the 32 px marker square
      const rgba = ctx.getImageData(0, 0, 4, 4).data;
      let level = 0;
      for (let i = 0; i < 16; i++) level += (rgba[4 * i] + rgba[4 * i + 1] + rgba[4 * i + 2]) / 3;
      window.__cameraLog.push({ t: md.captureTime ?? null, shown: now, level: level / 16 });
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  });
  log(`camera: recording ${seconds} s`);
  await sleep(seconds * 1000);
  await page.screenshot({ path: resolve(outPath).replace(/\.json$/, '') + '-camera.png' });
  const logs = await page.evaluate(() => {
    window.__watching = false;
    return { camera: window.__cameraLog, avatar: window.__avatarLog };
  });
  await sleep(1500);  // the next stats message
  return { ...logs, state: await state(), server_stats: lastStats('camera') };
}

async function measureTalk() {
  await startMode('talk');
  await watchAvatar(false);
  await page.evaluate(async () => {
    // the microphone track the page sends: its level per 128-sample block, stamped on arrival here
    const worklet = `class Level extends AudioWorkletProcessor {
      process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        if (ch) { let e = 0; for (const v of ch) e += v * v; this.port.postMessage({ n: ch.length, rms: Math.sqrt(e / ch.length) }); }
        return true;
      }
    }
    registerProcessor('level', Level);`;
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([worklet], { type: 'text/javascript' })));
    const node = new AudioWorkletNode(ctx, 'level');
    const mute = ctx.createGain();
    mute.gain.value = 0;
    ctx.createMediaStreamSource(pirender.localStream()).connect(node).connect(mute).connect(ctx.destination);
    await ctx.resume();
    window.__micLog = [];
    window.__micCtx = ctx;
    node.port.onmessage = (e) => {
      // the block ended at most now: its first sample was captured n samples earlier
      if (window.__watching) window.__micLog.push({ t: performance.now() - (1000 * e.data.n) / ctx.sampleRate, rms: e.data.rms });
    };
  });
  log(`talk: recording ${seconds} s`);
  setTimeout(() => page.screenshot({ path: resolve(outPath).replace(/\.json$/, '') + '-talk.png' }).catch(() => {}), seconds * 500);
  // the page keeps the newest 300 frames of its mouth log: gather it every 5 s
  const mouth = [];
  const gather = async () => {
    const last = mouth.length ? mouth[mouth.length - 1].shown : -Infinity;
    for (const entry of await page.evaluate(() => pirender.mouthLog())) if (entry.shown > last) mouth.push(entry);
  };
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await sleep(Math.min(5000, end - Date.now()));
    await gather();
  }
  const logs = await page.evaluate(() => {
    window.__watching = false;
    window.__micCtx.close();
    return { mic: window.__micLog, avatar_frames: window.__avatarLog.length };
  });
  logs.mouth = mouth;
  await sleep(1500);
  return { ...logs, state: await state(), server_stats: lastStats('talk') };
}

async function main() {
  context = await launchChromium(profileDir, chromiumArgs({ fakeY4m, fakeWav }));
  result.browser_version = context.browser() ? context.browser().version() : null;
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (err) => log(`page error: ${err}`));
  page.on('websocket', (ws) => {
    ws.on('framereceived', (frame) => {
      try {
        const msg = JSON.parse(frame.payload);
        if (msg.type === 'stats') result.server_stats.push(msg);
        if (result.server_stats.length > 200) result.server_stats.shift();
      } catch { /* not JSON */ }
    });
  });
  log(`opening ${url}`);
  await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  await page.waitForFunction(() => window.pirender && pirender.state().serverConnected, null, { timeout: 10_000 });
  result.camera = await measureCamera();
  result.talk = await measureTalk();
  result.ok = true;
}

const hardTimer = setTimeout(() => {
  result.error = 'hard timeout';
  writeFileSync(resolve(outPath), JSON.stringify(result));
  process.exit(3);
}, (2 * seconds + 120) * 1000);

try {
  await main();
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
  console.error(result.error);
} finally {
  clearTimeout(hardTimer);
  result.server_stats = [];  // kept per mode above
  writeFileSync(resolve(outPath), JSON.stringify(result));
  if (context) await context.close().catch(() => {});
  rmSync(profileDir, { recursive: true, force: true });
}
process.exit(result.ok ? 0 : 1);
