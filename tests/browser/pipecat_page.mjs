// The pipecat voice-agent example (examples/pipecat_agent) in a real browser, as a user meets it: the
// system Chromium opens the page, the fake microphone plays FAKE_WAV (silence, then a spoken sentence:
// the user talking over the bot's greeting), the Connect button is clicked, and the page is watched
// for SECONDS after the click.
//
//   node tests/browser/pipecat_page.mjs URL OUT_DIR FAKE_WAV [SECONDS]
//
// Recorded in the page (all times in seconds since the click):
// - the avatar <video>: every presented frame (requestVideoFrameCallback), its size, whether it plays;
// - the remote audio as the page plays it (an AudioContext analyser on the <video>'s stream, RMS every
//   20 ms) and WebRTC getStats (inbound-rtp audio bytes, audioLevel, totalAudioEnergy; inbound video);
// - the microphone as sent (an analyser on the getUserMedia stream): when the user speaks;
// - the status line, console and page errors; a screenshot (OUT_DIR/page.png) while the bot speaks.
// Writes OUT_DIR/result.json: the series' summary (frames presented and rate, video size, remote audio,
// the greeting, the bot's level while the user talks over it, its answer). Exit 0: every step ran; the
// caller judges the numbers (tests/test_pipecat_avatar.py). Chromium is started without the
// autoplay override the other page tests use: the click is the user gesture that lets the page play
// sound, as for a user.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  CHROMIUM, chromiumArgs, keepPeerConnections, launchChromium, runAndExit, stepLogger,
} from './chromium.mjs';

const [url, outArg, fakeWav, secondsArg] = process.argv.slice(2);
const seconds = Number(secondsArg || 14);
if (!url || !outArg || !fakeWav || !(seconds > 0)) {
  console.error('usage: node pipecat_page.mjs URL OUT_DIR FAKE_WAV [SECONDS]');
  process.exit(64);
}
if (!existsSync(fakeWav)) {
  console.error(`fake microphone file ${fakeWav} does not exist`);
  process.exit(64);
}
const outDir = resolve(outArg);
mkdirSync(outDir, { recursive: true });
const OVERALL_TIMEOUT_MS = (seconds + 30) * 1000;
const VOICED = 0.01;     // RMS above which the bot's audio counts as voice (its quiet is digital zero)
const MIC_VOICED = 0.01; // the same for the microphone (the fake WAV's silence is zero too)

const result = {
  url, chromium: CHROMIUM, fake_microphone: resolve(fakeWav), seconds, ok: false, error: null, steps: [],
  console_errors: [], console_warnings: [], page_errors: [],
};
const t0 = Date.now();
const log = stepLogger(result, t0);
const writeResult = () => writeFileSync(join(outDir, 'result.json'), JSON.stringify(result, null, 2));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let context = null;
let page = null;
const profileDir = mkdtempSync(join(tmpdir(), 'pirender-pipecat-'));

async function cleanup() {
  if (context) await context.close().catch(() => {});
  context = null;
  rmSync(profileDir, { recursive: true, force: true });
}

const hardTimer = setTimeout(async () => {
  result.error = `hard timeout: the whole run took over ${OVERALL_TIMEOUT_MS / 1000} s`;
  console.error(result.error);
  writeResult();
  await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 3000))]);
  process.exit(3);
}, OVERALL_TIMEOUT_MS);

// Installed before the page's own script (after keepPeerConnections): keeps the page's microphone
// stream (the page keeps it private) and, from the moment the page has a stream to show, records it.
function instrument() {
  const rec = {
    clickAt: null, frames: [], remote: [], mic: [], stats: [], status: [], videoEvents: [], error: null,
  };
  window.__rec = rec;
  const since = () => (rec.clickAt === null ? null : (performance.now() - rec.clickAt) / 1000);
  window.__markClick = () => { rec.clickAt = performance.now(); };

  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await gum(constraints);
    window.__mic = stream;
    return stream;
  };

  function rms(analyser, buf) {
    analyser.getFloatTimeDomainData(buf);
    let energy = 0;
    for (const v of buf) energy += v * v;
    return Math.sqrt(energy / buf.length);
  }

  async function statsOnce(pc) {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const row = { t: since(), connectionState: pc.connectionState };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        row.audio_in = {
          bytes: s.bytesReceived, packets: s.packetsReceived, level: s.audioLevel, energy: s.totalAudioEnergy,
          samples_s: s.totalSamplesDuration, concealed: s.concealedSamples, received: s.totalSamplesReceived,
          codec: (byId.get(s.codecId) || {}).mimeType || null,
        };
      } else if (s.type === 'inbound-rtp' && s.kind === 'video') {
        row.video_in = {
          bytes: s.bytesReceived, width: s.frameWidth, height: s.frameHeight, decoded: s.framesDecoded,
          dropped: s.framesDropped, fps: s.framesPerSecond, codec: (byId.get(s.codecId) || {}).mimeType || null,
        };
      } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        row.audio_out = { bytes: s.bytesSent, packets: s.packetsSent };
      } else if (s.type === 'media-source' && s.kind === 'audio') {
        row.mic_level = s.audioLevel;
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        const l = byId.get(s.localCandidateId) || {};
        const r = byId.get(s.remoteCandidateId) || {};
        row.pair = { local: `${l.address ?? l.ip}:${l.port}`, remote: `${r.address ?? r.ip}:${r.port}`,
          remote_address: r.address ?? r.ip, protocol: l.protocol };
      }
    });
    rec.stats.push(row);
  }

  function start() {
    const video = document.getElementById('avatar');
    const status = document.getElementById('status');
    let lastStatus = null;
    for (const name of ['loadedmetadata', 'playing', 'pause', 'waiting', 'stalled', 'emptied', 'error']) {
      video.addEventListener(name, () => rec.videoEvents.push({ t: since(), event: name }));
    }
    // one chain of frame callbacks; re-armed if it went quiet while the video plays (a new srcObject)
    let frameHandle = null;
    let lastFrameAt = 0;
    const onFrame = (now, meta) => {
      lastFrameAt = performance.now();
      rec.frames.push({ t: since(), presented: meta.presentedFrames, w: meta.width, h: meta.height });
      frameHandle = video.requestVideoFrameCallback(onFrame);
    };
    const armFrames = () => {
      if (frameHandle !== null) video.cancelVideoFrameCallback(frameHandle);
      lastFrameAt = performance.now();
      frameHandle = video.requestVideoFrameCallback(onFrame);
    };
    armFrames();

    let ctx = null;
    let remote = null;
    let mic = null;
    let ticks = 0;
    setInterval(() => {
      if (status.textContent !== lastStatus) {
        lastStatus = status.textContent;
        rec.status.push({ t: since(), text: lastStatus });
      }
      if (rec.clickAt === null) return;
      if (!video.paused && performance.now() - lastFrameAt > 1000) {
        rec.videoEvents.push({ t: since(), event: 'frame callbacks re-armed' });
        armFrames();
      }
      try {
        // The AudioContext only after the click (before it, the autoplay policy keeps it suspended).
        if (!ctx && (video.srcObject || window.__mic)) ctx = new AudioContext();
        if (ctx && ctx.state === 'suspended') ctx.resume();
        const shown = video.srcObject;
        const tap = (stream) => {
          const analyser = ctx.createAnalyser();
          analyser.fftSize = 1024;
          ctx.createMediaStreamSource(stream).connect(analyser);
          return { analyser, buf: new Float32Array(analyser.fftSize) };
        };
        if (ctx && !remote && shown && shown.getAudioTracks().length) remote = tap(shown);
        if (ctx && !mic && window.__mic) mic = tap(window.__mic);
        const t = since();
        if (remote) rec.remote.push({ t, v: rms(remote.analyser, remote.buf) });
        if (mic) rec.mic.push({ t, v: rms(mic.analyser, mic.buf) });
        const pc = window.__pirenderPcs[window.__pirenderPcs.length - 1];
        if (pc && ++ticks % 12 === 0) statsOnce(pc).catch((e) => { rec.error = String(e); });
      } catch (e) {
        rec.error = String(e && e.stack ? e.stack : e);
      }
    }, 20);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
}

/** Stretches where `series` ({t, v}) is above `level`, joined across gaps up to `gapS`; each [start, end]. */
function segments(series, level, gapS) {
  const out = [];
  for (const p of series) {
    if (p.v <= level || p.t === null) continue;
    const last = out[out.length - 1];
    if (last && p.t - last[1] <= gapS) last[1] = p.t;
    else out.push([p.t, p.t]);
  }
  return out;
}
const within = (series, a, b) => series.filter((p) => p.t !== null && p.t >= a && p.t < b).map((p) => p.v);
const maxOf = (values) => (values.length ? Math.max(...values) : null);
const meanOf = (values) => (values.length ? values.reduce((s, v) => s + v, 0) / values.length : null);
const round = (v, digits = 3) => (typeof v === 'number' ? Number(v.toFixed(digits)) : v);

/** Frames presented per second in [a, b) from the requestVideoFrameCallback log. */
function rate(frames, a, b) {
  const inside = frames.filter((f) => f.t >= a && f.t < b);
  if (inside.length < 2) return { frames: inside.length, fps: 0 };
  const first = inside[0];
  const last = inside[inside.length - 1];
  // presentedFrames counts frames the compositor showed, callbacks may coalesce: use its difference
  const shown = last.presented - first.presented;
  return { frames: shown, fps: shown / (last.t - first.t), seconds: last.t - first.t };
}

function analyse(rec, screenshotAt) {
  const frames = rec.frames.filter((f) => f.t !== null);
  const firstFrame = frames.length ? frames[0].t : null;
  const end = seconds;
  const summary = { first_frame_s: round(firstFrame) };
  // video: frames presented after the first second of playback, and in 2 s windows
  if (firstFrame !== null) {
    const steady = rate(frames, firstFrame + 1, end);
    summary.video = {
      frames_presented: frames.length ? frames[frames.length - 1].presented - frames[0].presented + 1 : 0,
      steady_frames: steady.frames, steady_seconds: round(steady.seconds, 2), fps: round(steady.fps, 2),
      fps_2s_windows: [],
      sizes: [...new Set(frames.map((f) => `${f.w}x${f.h}`))],
    };
    for (let a = firstFrame + 1; a + 2 <= end; a += 2) summary.video.fps_2s_windows.push(round(rate(frames, a, a + 2).fps, 1));
    summary.video.min_fps_2s = summary.video.fps_2s_windows.length ? Math.min(...summary.video.fps_2s_windows) : null;
  }
  // remote audio (the bot's voice as the page plays it) and the microphone (the user)
  const remote = rec.remote.filter((p) => p.t !== null);
  const mic = rec.mic.filter((p) => p.t !== null);
  const botVoice = segments(remote, VOICED, 0.5);
  const userVoice = segments(mic, MIC_VOICED, 0.5);
  summary.audio = {
    remote_samples: remote.length, remote_max_rms: round(maxOf(remote.map((p) => p.v)), 4),
    bot_voiced_segments_s: botVoice.map(([a, b]) => [round(a, 2), round(b, 2)]),
    mic_samples: mic.length, mic_max_rms: round(maxOf(mic.map((p) => p.v)), 4),
    user_voiced_segments_s: userVoice.map(([a, b]) => [round(a, 2), round(b, 2)]),
  };
  const stats = rec.stats.filter((s) => s.t !== null);
  const lastStats = stats[stats.length - 1] || {};
  summary.rtc = {
    connection_state: lastStats.connectionState || null, pair: lastStats.pair || null,
    audio_in: lastStats.audio_in || null, video_in: lastStats.video_in || null,
    audio_out: lastStats.audio_out || null,
    max_inbound_audio_level: round(maxOf(stats.map((s) => (s.audio_in ? s.audio_in.level || 0 : 0))), 4),
  };
  // the greeting: the bot's voice before the user speaks
  const userStart = userVoice.length ? userVoice[0][0] : null;
  const userEnd = userVoice.length ? userVoice[0][1] : null;
  const greetingEnd = userStart ?? end;
  const greetingVoiced = botVoice.filter(([a]) => a < greetingEnd).reduce((s, [a, b]) => s + Math.min(b, greetingEnd) - a, 0);
  summary.greeting = {
    bot_first_voice_s: botVoice.length ? round(botVoice[0][0], 2) : null,
    voiced_s_before_user: round(greetingVoiced, 2),
    max_rms_before_user: round(maxOf(within(remote, 0, greetingEnd)), 4),
  };
  // the barge-in: the user starts speaking while the bot speaks; 1 s later (the VAD's start, the
  // interruption's way through the pipeline and the jitter buffer) until the user stops, the bot is quiet
  if (userStart !== null) {
    const during = within(remote, userStart + 1.0, userEnd);
    const voicedDuring = remote.filter((p) => p.t >= userStart && p.t < userEnd && p.v > VOICED);
    const answer = botVoice.find(([a]) => a > userEnd + 0.3);
    summary.barge_in = {
      user_speech_s: [round(userStart, 2), round(userEnd, 2)],
      bot_max_rms_in_last_second_before: round(maxOf(within(remote, userStart - 1, userStart)), 4),
      bot_speaking_when_user_started: (maxOf(within(remote, userStart - 1, userStart)) ?? 0) > VOICED,
      bot_max_rms_during: round(maxOf(during), 4),
      bot_mean_rms_during: round(meanOf(during), 5),
      samples_during: during.length,
      bot_stopped_after_user_s: voicedDuring.length ? round(voicedDuring[voicedDuring.length - 1].t - userStart, 2) : 0,
      bot_answered_at_s: answer ? round(answer[0], 2) : null,
    };
  }
  summary.screenshot_at_s = round(screenshotAt, 2);
  summary.bot_rms_around_screenshot = round(maxOf(within(remote, screenshotAt - 0.2, screenshotAt + 0.2)), 4);
  return summary;
}

async function main() {
  // the repo's Chromium switches, less the autoplay override: the user's click allows the sound
  const args = chromiumArgs({ fakeWav }).filter((a) => !a.startsWith('--autoplay-policy'));
  result.launch_args = args;
  log(`launching ${CHROMIUM}`);
  context = await launchChromium(profileDir, args);
  result.browser_version = context.browser() ? context.browser().version() : null;
  await context.addInitScript(keepPeerConnections);
  await context.addInitScript(instrument);
  page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => {
    const entry = { type: msg.type(), text: msg.text(), location: msg.location() };
    if (msg.type() === 'error') result.console_errors.push(entry);
    else if (msg.type() === 'warning') result.console_warnings.push(entry);
  });
  page.on('pageerror', (err) => result.page_errors.push(String(err && err.stack ? err.stack : err)));

  log(`opening ${url}`);
  await page.goto(url, { waitUntil: 'load', timeout: 15_000 });
  result.title = await page.title();
  await page.evaluate(() => window.__markClick());
  await page.click('#connect', { timeout: 5000 });
  log('clicked Connect');
  const clickAt = Date.now();
  const sinceClick = () => (Date.now() - clickAt) / 1000;

  // the avatar plays: frames presented and the playback clock moving
  await page.waitForFunction(() => {
    const v = document.getElementById('avatar');
    return v.videoWidth > 0 && !v.paused && v.readyState >= 2 && window.__rec.frames.length > 2;
  }, null, { timeout: 15_000, polling: 50 });
  result.playing_at_s = round(sinceClick(), 2);
  log(`the avatar video plays (${result.playing_at_s} s after the click)`);

  // a screenshot mid-speech: 1.2 s into the bot's first words (the greeting), before the user speaks
  let screenshotAt = null;
  try {
    await page.waitForFunction((level) => window.__rec.remote.some((p) => p.v > level), VOICED,
      { timeout: Math.max(1000, (seconds - sinceClick() - 2) * 1000), polling: 50 });
    await sleep(1200);
    screenshotAt = await page.evaluate(() => (performance.now() - window.__rec.clickAt) / 1000);
    await page.screenshot({ path: join(outDir, 'page.png') });
    log(`screenshot at ${screenshotAt.toFixed(2)} s`);
  } catch (err) {
    log(`no voice from the bot to take a screenshot during: ${String(err).split('\n')[0]}`);
  }
  await sleep(Math.max(0, (seconds - sinceClick()) * 1000));

  const rec = await page.evaluate(() => window.__rec);
  const video = await page.evaluate(() => {
    const v = document.getElementById('avatar');
    const s = v.srcObject;
    return {
      width: v.videoWidth, height: v.videoHeight, paused: v.paused, muted: v.muted, readyState: v.readyState,
      currentTime: v.currentTime, tracks: s ? { audio: s.getAudioTracks().length, video: s.getVideoTracks().length } : null,
      status: document.getElementById('status').textContent,
    };
  });
  if (!screenshotAt) {
    screenshotAt = sinceClick();
    await page.screenshot({ path: join(outDir, 'page.png') });
  }
  result.screenshot = join(outDir, 'page.png');
  result.video_element = video;
  result.summary = analyse(rec, screenshotAt);
  result.status_log = rec.status;
  result.video_events = rec.videoEvents;
  result.page_recorder_error = rec.error;
  result.series = {
    remote_rms: rec.remote.filter((_, i) => i % 5 === 0).map((p) => [round(p.t, 2), round(p.v, 4)]),
    mic_rms: rec.mic.filter((_, i) => i % 5 === 0).map((p) => [round(p.t, 2), round(p.v, 4)]),
    stats: rec.stats,
  };
  const s = result.summary;
  log(`video ${video.width}x${video.height}, ${s.video?.fps} fps presented (2 s windows ${s.video?.fps_2s_windows}); ` +
      `bot voiced ${JSON.stringify(s.audio.bot_voiced_segments_s)}, user ${JSON.stringify(s.audio.user_voiced_segments_s)}; ` +
      `barge-in ${JSON.stringify(s.barge_in)}`);

  // Hang up as a user does: the button; the page says so and lets go of the microphone
  await page.click('#hangup', { timeout: 5000 });
  await sleep(500);
  result.after_hangup = await page.evaluate(() => ({
    status: document.getElementById('status').textContent,
    connect_enabled: !document.getElementById('connect').disabled,
    mic_live: window.__mic ? window.__mic.getAudioTracks().some((t) => t.readyState === 'live') : null,
  }));
  log(`after Hang up: ${JSON.stringify(result.after_hangup)}`);

  // ... and connect again (the bot takes one visitor at a time: the first session must have ended)
  const again = Date.now();
  await page.click('#connect', { timeout: 5000 });
  try {
    await page.waitForFunction(() => {
      const v = document.getElementById('avatar');
      return document.getElementById('status').textContent === 'connected' && v.videoWidth > 0 && !v.paused;
    }, null, { timeout: 10_000, polling: 100 });
    result.reconnect = { ok: true, seconds: round((Date.now() - again) / 1000, 2) };
  } catch {
    result.reconnect = { ok: false, status: await page.evaluate(() => document.getElementById('status').textContent) };
  }
  log(`connect again: ${JSON.stringify(result.reconnect)}`);
  await page.click('#hangup', { timeout: 5000 }).catch(() => {});
  result.ok = true;
}

await runAndExit(main, {
  result,
  t0,
  what: 'pipecat page test',
  onFailure: async () => {
    if (!page) return;
    result.last_recording = await page.evaluate(() => ({
      status: document.getElementById('status').textContent, frames: window.__rec.frames.length,
      remote: window.__rec.remote.length, error: window.__rec.error, statusLog: window.__rec.status,
    })).catch(() => null);
    await page.screenshot({ path: join(outDir, 'page.png') }).catch(() => {});
  },
  finish: async () => {
    writeResult();
    await cleanup();
    clearTimeout(hardTimer);
  },
});
