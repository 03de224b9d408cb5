// The system Chromium (never a downloaded one) as the page tests and the latency measurement run it:
// headless, fake media devices (a y4m camera and a WAV microphone, each looped), loopback WebRTC,
// no background networking, plain-IP host candidates.
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.PIRENDER_CHROMIUM || '/usr/bin/chromium';

/** Chromium's command-line switches for a run with the given fake camera / microphone files. */
export function chromiumArgs({ fakeY4m = null, fakeWav = null } = {}) {
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--allow-loopback-in-peer-connection',
    // Host candidates as plain IPs, not mDNS names (aioice would have to resolve them). Chromium
    // honours only the last --disable-features, so this replaces Playwright's own default list.
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  ];
  if (fakeY4m) args.push(`--use-file-for-fake-video-capture=${resolve(fakeY4m)}`);
  if (fakeWav) args.push(`--use-file-for-fake-audio-capture=${resolve(fakeWav)}`, '--autoplay-policy=no-user-gesture-required');
  return args;
}

/** A persistent context on `profileDir` (Playwright refuses --user-data-dir in args: a fresh
 *  mkdtemp folder is the same thing; the caller removes it). */
export async function launchChromium(profileDir, args) {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM, headless: true, args, timeout: 30_000,
    viewport: { width: 1100, height: 800 },
  });
}

/** A step logger: prints each message with the seconds since `t0` (ms, Date.now()) and keeps the
 *  line in `result.steps` (the JSON the Python side reads). */
export function stepLogger(result, t0 = Date.now()) {
  return (message) => {
    const line = `[${((Date.now() - t0) / 1000).toFixed(1)}s] ${message}`;
    result.steps.push(line);
    console.log(line);
  };
}

/** Runs in the page before its own scripts (`context.addInitScript(keepPeerConnections)`): every
 *  RTCPeerConnection the page makes is kept in `window.__pirenderPcs`, for getStats() (the page keeps
 *  its own private and is otherwise unchanged). */
export function keepPeerConnections() {
  const Native = window.RTCPeerConnection;
  window.__pirenderPcs = [];
  window.RTCPeerConnection = function (...a) {
    const pc = new Native(...a);
    window.__pirenderPcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
  Object.setPrototypeOf(window.RTCPeerConnection, Native);
}

/** Runs a browser script's `main` and exits the process: 0 when it returned, 1 when it threw. On a
 *  throw, `result.error` gets the stack, `what` names the script on stderr and `onFailure` (async)
 *  may record the page's state; either way `result.elapsed_s` is set (seconds since `t0`) and
 *  `finish` (async: write the result, close the browser, clear timers) runs. */
export async function runAndExit(main, { result, t0, what, onFailure, finish }) {
  let code = 0;
  try {
    await main();
  } catch (err) {
    code = 1;
    result.error = String(err && err.stack ? err.stack : err);
    console.error(`${what} failed: ${result.error}`);
    await onFailure();
  } finally {
    result.elapsed_s = (Date.now() - t0) / 1000;
    await finish();
  }
  process.exit(code);
}
