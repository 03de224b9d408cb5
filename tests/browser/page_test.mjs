// Real-browser end-to-end check of `pirender serve`: the system Chromium (never a downloaded one)
// opens the page, streams idle / sliders / camera over WebRTC and measures what a viewer would see.
//
//   node tests/browser/page_test.mjs URL OUT_DIR [FAKE_Y4M]
//
// Writes OUT_DIR/result.json (everything measured, console errors included) and OUT_DIR/page.png.
// Exit 0: every step ran; non-zero with a message otherwise. Judging the numbers is the caller's job
// (tests/test_browser.py). Hard overall timeout: 90 s.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  CHROMIUM, chromiumArgs, keepPeerConnections, launchChromium, runAndExit, stepLogger,
} from './chromium.mjs';

const OVERALL_TIMEOUT_MS = Number(process.env.PIRENDER_PAGE_TIMEOUT_MS) || 120_000;
const SIGNATURE_PX = 64;

const [url, outArg, fakeY4mArg, fakeWavArg] = process.argv.slice(2);
const fakeY4m = fakeY4mArg || null;  // fake camera ('' for none)
const fakeWav = fakeWavArg || null;  // fake microphone: a WAV of speech bursts, for talk mode
if (!url || !outArg) {
  console.error('usage: node page_test.mjs URL OUT_DIR [FAKE_Y4M|""] [FAKE_WAV]');
  process.exit(64);
}
const outDir = resolve(outArg);
mkdirSync(outDir, { recursive: true });
if (fakeY4m && !existsSync(fakeY4m)) {
  console.error(`fake camera file ${fakeY4m} does not exist`);
  process.exit(64);
}
if (fakeWav && !existsSync(fakeWav)) {
  console.error(`fake microphone file ${fakeWav} does not exist`);
  process.exit(64);
}

const result = {
  url, chromium: CHROMIUM, fake_camera: fakeY4m, fake_microphone: fakeWav, ok: false, error: null, steps: [],
  console_errors: [], console_warnings: [], page_errors: [], server_stats: [], server_errors: [],
  offer_candidates: [], answer_candidates: [],
};
const t0 = Date.now();
const log = stepLogger(result, t0);
const writeResult = () => writeFileSync(join(outDir, 'result.json'), JSON.stringify(result, null, 2));

let browser = null;
let profileDir = null;
let page = null;

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  profileDir = null;
}

const hardTimer = setTimeout(async () => {
  result.error = `hard timeout: the whole run took over ${OVERALL_TIMEOUT_MS / 1000} s`;
  console.error(result.error);
  if (page) result.last_state = await page.evaluate(() => pirender.state()).catch(() => null);
  writeResult();
  await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 3000))]);
  process.exit(3);
}, OVERALL_TIMEOUT_MS);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const state = () => page.evaluate(() => pirender.state());
const candidateAddresses = (sdp) =>
  [...String(sdp).matchAll(/a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+)/g)].map((m) => `${m[1]} ${m[2]}`);

/** Polls `check(state)` until it returns true; throws with the last state after `timeoutMs`. */
async function waitFor(what, check, timeoutMs, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    last = await state();
    if (check(last)) return last;
    if (last.lastError) log(`  (page error while waiting for ${what}: ${last.lastError})`);
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}; last state ${JSON.stringify(last)}`);
}

/** The <video> drawn into a 64x64 canvas: RGB bytes (alpha dropped). */
async function signature() {
  return page.evaluate((size) => {
    const video = document.getElementById('avatar');
    if (!video.videoWidth) return null;
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = size;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, size, size);
    const rgba = ctx.getImageData(0, 0, size, size).data;
    const rgb = [];
    for (let i = 0; i < rgba.length; i += 4) rgb.push(rgba[i], rgba[i + 1], rgba[i + 2]);
    return rgb;
  }, SIGNATURE_PX);
}

function meanAbsDiff(a, b) {
  if (!a || !b || a.length !== b.length) return null;
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}
const meanLevel = (a) => (a ? a.reduce((s, v) => s + v, 0) / a.length : null);

/** Frames presented per second over `ms` (the page's requestVideoFrameCallback count). */
async function measureFps(ms) {
  const a = await state();
  const ta = Date.now();
  await sleep(ms);
  const b = await state();
  return ((b.framesPresented - a.framesPresented) * 1000) / (Date.now() - ta);
}

/** The WebRTC stats of the page's peer connection: the selected candidate pair and the inbound video. */
async function rtcSummary() {
  return page.evaluate(async () => {
    // The page keeps its RTCPeerConnection private; the test wraps the constructor (see addInitScript).
    const pc = window.__pirenderPcs && window.__pirenderPcs[window.__pirenderPcs.length - 1];
    if (!pc) return null;
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const out = { connectionState: pc.connectionState, pair: null, inbound: null };
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        const l = byId.get(s.localCandidateId) || {};
        const r = byId.get(s.remoteCandidateId) || {};
        out.pair = {
          local: `${l.address ?? l.ip}:${l.port} ${l.candidateType} ${l.protocol}`,
          remote: `${r.address ?? r.ip}:${r.port} ${r.candidateType} ${r.protocol}`,
          local_address: l.address ?? l.ip, remote_address: r.address ?? r.ip,
          rtt_ms: s.currentRoundTripTime != null ? 1000 * s.currentRoundTripTime : null,
        };
      }
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.inbound = {
          codec: (byId.get(s.codecId) || {}).mimeType || null,
          width: s.frameWidth, height: s.frameHeight, fps: s.framesPerSecond,
          framesDecoded: s.framesDecoded, framesDropped: s.framesDropped,
          jitter_buffer_ms: s.jitterBufferEmittedCount ? (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount : null,
          decode_ms: s.framesDecoded ? (1000 * s.totalDecodeTime) / s.framesDecoded : null,
        };
      }
    });
    return out;
  });
}

/** pirender.start(mode), timed: until the answer is applied, and until the next frame is presented. */
async function startMode(mode) {
  const before = (await state()).framesPresented;
  const t = Date.now();
  await page.evaluate((m) => pirender.start(m), mode);
  const answered = Date.now() - t;
  await waitFor(`the first frame of the ${mode} stream`, (s) => s.framesPresented > before, 20_000, 20);
  const timing = { start_resolved_ms: answered, first_frame_ms: Date.now() - t };
  log(`start(${mode}): answer applied after ${answered} ms, first frame after ${timing.first_frame_ms} ms`);
  return timing;
}

/** Times where `v` rises above `fraction` of its maximum after at least `quietMs` below it. */
function onsets(series, fraction, quietMs) {
  const threshold = fraction * Math.max(0, ...series.map((p) => p.v));
  const found = [];
  let lastAbove = -Infinity;
  for (const p of series) {
    if (p.v > threshold) {
      if (p.t - lastAbove > quietMs) found.push(p.t);
      lastAbove = p.t;
    }
  }
  return found;
}

const lastServerStats = (mode) => {
  const all = mode ? result.server_stats.filter((s) => s.mode === mode) : result.server_stats;
  return all.length ? all[all.length - 1] : null;
};

async function main() {
  const args = chromiumArgs({ fakeY4m, fakeWav });
  profileDir = mkdtempSync(join(tmpdir(), 'pirender-chromium-'));
  result.launch_args = args;
  log(`launching ${CHROMIUM}`);
  const context = await launchChromium(profileDir, args);
  browser = context;
  result.browser_version = context.browser() ? context.browser().version() : null;
  await context.addInitScript(keepPeerConnections);
  page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    const entry = { type: msg.type(), text: msg.text(), location: msg.location() };
    if (msg.type() === 'error') result.console_errors.push(entry);
    else if (msg.type() === 'warning') result.console_warnings.push(entry);
  });
  page.on('pageerror', (err) => result.page_errors.push(String(err && err.stack ? err.stack : err)));
  // The signaling websocket as the page sees it: the offer/answer SDP and the server's stats.
  const sentLog = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', (frame) => {
      try {
        const msg = JSON.parse(frame.payload);
        sentLog.push(`${((Date.now() - t0) / 1000).toFixed(2)}s ${msg.type}`);
        if (sentLog.length > 8) sentLog.shift();
        if (msg.type === 'offer') result.offer_candidates.push(candidateAddresses(msg.sdp));
      } catch { /* not JSON */ }
    });
    ws.on('framereceived', (frame) => {
      try {
        const msg = JSON.parse(frame.payload);
        if (msg.type === 'stats') result.server_stats.push({ t_s: (Date.now() - t0) / 1000, ...msg });
        else if (msg.type === 'answer') result.answer_candidates.push(candidateAddresses(msg.sdp));
        else if (msg.type === 'error') {
          // with the page's last messages on the websocket (which one the server refused)
          result.server_errors.push({ message: msg.message, t_s: (Date.now() - t0) / 1000, sent_before: [...sentLog] });
        }
      } catch { /* not JSON */ }
    });
  });

  log(`opening ${url}`);
  await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  await page.waitForFunction(() => window.pirender && pirender.state().serverConnected, null, { timeout: 10_000 });

  // ---- idle
  const idleStart = await startMode('idle');
  const idle = await waitFor('more than 30 presented frames (idle)', (s) => s.framesPresented > 30, 30_000);
  const idleA = await signature();
  await sleep(1000);
  const idleB = await signature();
  result.idle = {
    state: idle,
    timing: idleStart,
    fps: await measureFps(2000),
    motion_diff_1s: meanAbsDiff(idleA, idleB),
    video_mean_level: meanLevel(idleB),
  };
  result.rtc = await rtcSummary();
  log(`idle: ${idle.framesPresented} frames, ${result.idle.fps.toFixed(1)} fps, ` +
      `pair ${JSON.stringify(result.rtc && result.rtc.pair)}`);

  // ---- sliders
  const base = (await state()).framesPresented;
  const slidersStart = await startMode('sliders');
  await waitFor('frames of the sliders stream', (s) => s.connected && s.framesPresented > base + 15, 15_000);
  await sleep(1000);  // let the encoder settle on the still picture
  const still1 = await signature();
  await sleep(500);
  const before = await signature();
  await page.evaluate(() => { pirender.setSlider('yaw', 0.5); pirender.setSlider('jaw_open', 1.0); });
  await sleep(1000);
  const after = await signature();
  result.sliders = {
    timing: slidersStart,
    static_diff: meanAbsDiff(still1, before),   // the same still picture twice: codec noise only
    slider_diff: meanAbsDiff(before, after),    // yaw 0.5 rad + jaw_open 1.0
    video_mean_level: meanLevel(after),
  };
  log(`sliders: still ${result.sliders.static_diff?.toFixed(2)}, slider change ${result.sliders.slider_diff?.toFixed(2)}`);

  // ---- glass to glass
  const g2gState = await waitFor('a glass-to-glass p50', (s) => s.g2g && typeof s.g2g.p50 === 'number', 15_000, 500);
  await sleep(2000);  // a few more samples
  const settled = await state();
  result.g2g = settled.g2g && typeof settled.g2g.p50 === 'number' ? settled.g2g : g2gState.g2g;
  result.last_latency_ms = settled.lastLatencyMs;
  result.fps = await measureFps(2000);
  result.sliders.state = settled;
  result.sliders.rtc = await rtcSummary();
  result.sliders.server_stats = lastServerStats('sliders');
  log(`g2g p50 ${result.g2g.p50?.toFixed(1)} p90 ${result.g2g.p90?.toFixed(1)} p99 ${result.g2g.p99?.toFixed(1)} ms, ` +
      `fps ${result.fps.toFixed(1)}, server ${JSON.stringify(result.sliders.server_stats)}`);

  // ---- camera (the fake camera plays FAKE_Y4M in a loop)
  if (fakeY4m) {
    const camBase = (await state()).framesPresented;
    const cameraStart = await startMode('camera');
    const cam = await waitFor('frames of the camera stream', (s) => s.connected && s.mode === 'camera' &&
      s.framesPresented > camBase + 25, 20_000);
    const signatures = [];
    for (let i = 0; i < 6; i++) {
      signatures.push(await signature());
      await sleep(1000);
    }
    const diffs = signatures.slice(1).map((s, i) => meanAbsDiff(signatures[i], s));
    const statsDeadline = Date.now() + 5000;
    while (!lastServerStats('camera') && Date.now() < statsDeadline) await sleep(250);
    result.camera = {
      state: await state(),
      timing: cameraStart,
      frames_at_start: cam.framesPresented,
      diffs_1s: diffs,
      max_diff_1s: Math.max(...diffs.filter((d) => d !== null)),
      fps: await measureFps(2000),
      rtc: await rtcSummary(),
      server_stats: lastServerStats('camera'),
      server_stats_mode: lastServerStats() ? lastServerStats().mode : null,
    };
    log(`camera: diffs 1 s apart ${diffs.map((d) => d?.toFixed(2)).join(' ')}, ` +
        `server mode ${result.camera.server_stats_mode}`);
  }

  // ---- talk (the fake microphone plays FAKE_WAV, speech bursts between silences, in a loop)
  if (fakeWav) {
    const talkBase = (await state()).framesPresented;
    const talkStart = await startMode('talk');
    await waitFor('frames of the talk stream', (s) => s.connected && s.mode === 'talk' &&
      s.framesPresented > talkBase + 25, 20_000);
    const tracks = await page.evaluate(async () => {
      // The avatar's returned audio as the page plays it: RMS of the newest 256 samples every 5 ms.
      const stream = document.getElementById('avatar').srcObject;
      const ctx = new AudioContext();
      await ctx.resume();
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 256;
      ctx.createMediaStreamSource(stream).connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      window.__audioLog = [];
      window.__audioTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(buf);
        let energy = 0;
        for (const v of buf) energy += v * v;
        window.__audioLog.push({ t: performance.now(), level: Math.sqrt(energy / buf.length) });
      }, 5);
      window.__audioCtx = ctx;
      return { audio: stream.getAudioTracks().length, video: stream.getVideoTracks().length };
    });
    await sleep(9000);
    const logs = await page.evaluate(() => {
      clearInterval(window.__audioTimer);
      window.__audioCtx.close();
      return { audio: window.__audioLog, mouth: pirender.mouthLog() };
    });
    const audioOnsets = onsets(logs.audio.map((p) => ({ t: p.t, v: p.level })), 0.15, 400);
    const mouthOnsets = onsets(logs.mouth.map((p) => ({ t: p.shown, v: p.mouth })), 0.3, 400);
    const offsets = [];
    for (const a of audioOnsets) {
      const near = mouthOnsets.filter((m) => Math.abs(m - a) < 500).sort((x, y) => Math.abs(x - a) - Math.abs(y - a));
      if (near.length) offsets.push(near[0] - a);
    }
    const sorted = [...offsets].sort((x, y) => x - y);
    result.talk = {
      timing: talkStart,
      remote_tracks: tracks,
      max_audio_level: Math.max(0, ...logs.audio.map((p) => p.level)),
      max_mouth: Math.max(0, ...logs.mouth.map((p) => p.mouth)),
      mouth_frames: logs.mouth.length,
      audio_onsets: audioOnsets.length,
      mouth_onsets: mouthOnsets.length,
      av_offsets_ms: offsets,  // mouth opens (shown) - voice starts (played); > 0: the picture is late
      av_offset_median_ms: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
      server_stats: lastServerStats('talk'),
    };
    log(`talk: ${offsets.length} voice onsets paired, A/V offsets ${offsets.map((o) => o.toFixed(0)).join(' ')} ms`);
  }

  await page.screenshot({ path: join(outDir, 'page.png') });
  result.screenshot = join(outDir, 'page.png');
  result.final_state = await state();
  // Stop, then stay 1.2 s: the page's once-a-second timers run once more without a stream.
  const stopT = (Date.now() - t0) / 1000;
  await page.evaluate(() => pirender.stop());
  await sleep(1200);
  result.after_stop = {
    state: await state(),
    server_errors: result.server_errors.filter((e) => e.t_s >= stopT),
  };
  result.server_errors = result.server_errors.filter((e) => e.t_s < stopT);
  result.ok = true;
}

await runAndExit(main, {
  result,
  t0,
  what: 'page test',
  onFailure: async () => {
    if (!page) return;
    result.last_state = await state().catch(() => null);
    await page.screenshot({ path: join(outDir, 'page.png') }).catch(() => {});
  },
  finish: async () => {
    writeResult();
    await cleanup();
    clearTimeout(hardTimer);
  },
});
