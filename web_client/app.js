// pirender-live browser client: signaling over a websocket at /ws, the avatar over WebRTC, motion
// controls and latency probes over the "control" data channel. Protocol: engine/server/protocol.py.
// Plain script, no framework, no build step, no external URLs.
'use strict';

(() => {
  const ANGLE_SLOTS = new Set(['pitch', 'yaw', 'roll']);
  const ACCEPTED_IMAGES = ['image/png', 'image/jpeg', 'image/webp'];
  const DEFAULT_MAX_UPLOAD = 8 * 1024 * 1024;  // used until the server's hello says otherwise
  const RTP_MOD = 2 ** 32;
  const CONTROL_INTERVAL_MS = 33;   // at most ~30 control messages per second
  const PING_INTERVAL_MS = 2000;
  const PING_HISTORY = 10;          // clock offset from the best-rtt ping of the last 10
  const FRAME_HISTORY = 300;        // frame messages / latencies kept
  const PAIR_HISTORY = 90;          // (rtp - pts) differences used to learn the RTP offset
  const PAIR_SETTLE_MS = 150;       // wait this long after a frame arrives before pairing it
  const ANSWER_TIMEOUT_MS = 15000;

  const $ = (id) => document.getElementById(id);
  const els = {
    video: $('avatar'), overlay: $('overlay'), status: $('status'), error: $('error'),
    mode: $('mode'), start: $('start'), stop: $('stop'), showStats: $('show-stats'),
    upload: $('upload'), uploadNote: $('upload-note'), sliders: $('sliders'), reset: $('reset'),
    hearAvatar: $('hear-avatar'),
  };

  // All mutable page state in one place.
  const S = {
    ws: null, wsOpen: false, reconnectMs: 500,
    hello: null, slots: [], limits: {}, helloWaiters: [],
    pc: null, dc: null, camera: null, gen: 0,
    mode: 'idle', running: false, starting: false, answerWaiter: null,
    lastError: null,
    pendingSlots: {}, controlTimer: null, lastControlSent: -Infinity,
    pings: [], clockOffset: null, clockRtt: null,
    mouthLog: [],                           // talk: {shown, mouth} of presented frames
    frameMsgs: new Map(), frameOrder: [],   // pts mod 2^32 -> {captureMs, arrival}
    presented: [],                          // frames shown, awaiting pairing: {rtp, recv, shown}
    pairDiffs: [], rtpOffset: null,
    latencies: [], lastLatencyMs: null, m2p: [], lastMotionMs: null, framesPresented: 0, fpsTimes: [],
    presentedBatch: [],                     // {rtp, shown} on the client clock
    rvfcHandle: null, serverStats: null, rtcStats: null, sawRtp: false,
  };
  const hasRvfc = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;

  // ---------------------------------------------------------------- small helpers
  const mod32 = (x) => ((Math.round(x) % RTP_MOD) + RTP_MOD) % RTP_MOD;
  const fmt = (v, digits = 1) => (typeof v === 'number' && isFinite(v) ? v.toFixed(digits) : '–');
  const fmtBytes = (n) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;

  function percentile(sorted, p) {
    if (!sorted.length) return null;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[i];
  }

  function g2g() { return quantiles(S.latencies); }

  /** Motion-to-photon: from the capture of what drove a frame (camera frame, voice) to its display. */
  function m2p() { return quantiles(S.m2p); }

  function quantiles(values) {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99) };
  }

  function showError(message) {
    S.lastError = String(message);
    els.error.textContent = `Error: ${S.lastError}`;
    els.error.hidden = false;
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = '';
  }

  function isConnected() {
    const pc = S.pc;
    if (!pc) return false;
    if (pc.connectionState) return pc.connectionState === 'connected';
    return pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
  }

  function updateStatus() {
    const sock = S.wsOpen ? 'connected' : 'disconnected';
    let stream = 'stopped';
    if (S.starting) stream = `starting (${S.mode})`;
    else if (S.pc) stream = `${S.pc.connectionState || S.pc.iceConnectionState} (${S.mode})`;
    const dc = S.dc ? S.dc.readyState : 'none';
    els.status.textContent = `Server: ${sock} · Stream: ${stream} · Data channel: ${dc}`;
    els.start.disabled = !S.hello || S.starting || !!S.pc;
    els.stop.disabled = !S.pc && !S.starting;
    els.reset.disabled = !S.slots.length;
  }

  // ---------------------------------------------------------------- sending
  /** Sends on the data channel when open (lower latency), else on the websocket. */
  function send(msg) {
    if (S.dc && S.dc.readyState === 'open') {
      S.dc.send(JSON.stringify(msg));
      return true;
    }
    return sendWs(msg);
  }

  /** Sends on the websocket only (signaling, uploads, stop). */
  function sendWs(msg) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
    S.ws.send(JSON.stringify(msg));
    return true;
  }

  // ---------------------------------------------------------------- websocket + messages
  function connectSocket() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // an exposed server prints its page URL with #token=...: the fragment never travels over HTTP,
    // the page passes it to the websocket it opens
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    const query = token ? `?token=${encodeURIComponent(token)}` : '';
    const ws = new WebSocket(`${proto}//${location.host}/ws${query}`);
    S.ws = ws;
    ws.onopen = () => {
      S.wsOpen = true;
      S.reconnectMs = 500;
      sendPing();
      updateStatus();
    };
    ws.onmessage = (ev) => handleMessage(ev.data);
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.wsOpen = false;
      S.hello = null;
      // The server ends the stream with the socket; drop ours too and reconnect.
      if (S.pc || S.starting) {
        stop(false);
        showError('connection to the server lost');
      }
      updateStatus();
      setTimeout(connectSocket, S.reconnectMs);
      S.reconnectMs = Math.min(S.reconnectMs * 2, 5000);
    };
  }

  function handleMessage(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return;  // never from our server; ignore
    }
    switch (msg.type) {
      case 'hello': onHello(msg); break;
      case 'answer':
        if (S.answerWaiter) S.answerWaiter.resolve(msg.sdp);
        break;
      case 'pong': onPong(msg); break;
      case 'frame': onFrameMessage(msg); break;
      case 'stats': S.serverStats = msg; break;
      case 'uploaded': els.uploadNote.textContent = 'Portrait in use.'; break;
      case 'error':
        showError(msg.message || 'unknown server error');
        // An error while an offer is pending means the stream was refused.
        if (S.answerWaiter) S.answerWaiter.reject(new Error(msg.message || 'offer refused'));
        break;
      default: break;
    }
  }

  function onHello(msg) {
    S.hello = msg;
    S.limits = msg.limits || {};
    buildSliders(Array.isArray(msg.slots) ? msg.slots : []);
    // the modes come from the server (the protocol module lists them): an option per mode,
    // labelled by the page where it knows the mode, by its name otherwise; the others hidden
    const modes = Array.isArray(msg.modes) ? msg.modes.filter((m) => typeof m === 'string') : [];
    const known = new Set([...els.mode.options].map((option) => option.value));
    for (const mode of modes) {
      if (!known.has(mode)) els.mode.add(new Option(mode, mode));
    }
    for (const option of els.mode.options) option.hidden = !modes.includes(option.value);
    const max = S.limits.max_upload_bytes || DEFAULT_MAX_UPLOAD;
    els.uploadNote.textContent = `At most ${fmtBytes(max)}.`;
    S.helloWaiters.splice(0).forEach((resolve) => resolve());
    updateStatus();
  }

  function waitForHello(timeoutMs = 10000) {
    if (S.hello && S.wsOpen) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('server not reachable')), timeoutMs);
      S.helloWaiters.push(() => { clearTimeout(t); resolve(); });
    });
  }

  // ---------------------------------------------------------------- sliders
  /** Label text of one slot: angles in degrees (sent in radians), others in their unit. */
  function slotLabel(slot, value) {
    if (ANGLE_SLOTS.has(slot.name) || /^rad/.test(slot.unit || '')) {
      return `${(value * 180 / Math.PI).toFixed(1)}°`;
    }
    return `${value.toFixed(3)}${slot.unit ? ` ${slot.unit}` : ''}`;
  }

  function buildSliders(slots) {
    S.slots = slots;
    els.sliders.textContent = '';
    for (const slot of slots) {
      const id = `slot-${slot.name}`;
      const row = document.createElement('div');
      row.className = 'slider';
      const label = document.createElement('label');
      label.htmlFor = id;
      const name = document.createElement('span');
      name.textContent = slot.name;
      const out = document.createElement('output');
      out.htmlFor = id;
      label.append(name, out);
      const input = document.createElement('input');
      Object.assign(input, {
        type: 'range', id, min: slot.min, max: slot.max, step: (slot.max - slot.min) / 1000 || 'any',
      });
      input.value = slot.default;
      input.dataset.slot = slot.name;
      out.textContent = slotLabel(slot, Number(input.value));
      input.addEventListener('input', () => {
        const v = Number(input.value);
        out.textContent = slotLabel(slot, v);
        queueControl(slot.name, v);
      });
      row.append(label, input);
      els.sliders.append(row);
    }
    if (!slots.length) els.sliders.textContent = 'The server offers no sliders.';
  }

  function sliderInput(name) {
    return els.sliders.querySelector(`input[data-slot="${CSS.escape(name)}"]`);
  }

  /** Sets one slider (protocol units: radians for angles), clamped to its range, and sends it. */
  function setSlider(name, value) {
    const slot = S.slots.find((s) => s.name === name);
    const input = sliderInput(name);
    if (!slot || !input) throw new Error(`unknown slider ${name}`);
    const v = Math.min(slot.max, Math.max(slot.min, Number(value)));
    input.value = v;
    input.parentElement.querySelector('output').textContent = slotLabel(slot, v);
    queueControl(name, v);
    return v;
  }

  /** Throttles control messages to one per CONTROL_INTERVAL_MS, merging slots in between. */
  function queueControl(name, value) {
    S.pendingSlots[name] = value;
    if (S.controlTimer !== null) return;
    const wait = Math.max(0, S.lastControlSent + CONTROL_INTERVAL_MS - performance.now());
    S.controlTimer = setTimeout(flushControls, wait);
  }

  function flushControls() {
    clearTimeout(S.controlTimer);
    S.controlTimer = null;
    if (!Object.keys(S.pendingSlots).length) return;
    send({ type: 'control', slots: S.pendingSlots });
    S.pendingSlots = {};
    S.lastControlSent = performance.now();
  }

  /** Sends every slider's current value at once (after reset or a new stream). */
  function sendAllSliders() {
    for (const input of els.sliders.querySelectorAll('input[data-slot]')) {
      S.pendingSlots[input.dataset.slot] = Number(input.value);
    }
    flushControls();
  }

  function resetSliders() {
    for (const slot of S.slots) {
      const input = sliderInput(slot.name);
      if (!input) continue;
      input.value = slot.default;
      input.parentElement.querySelector('output').textContent = slotLabel(slot, Number(slot.default));
    }
    sendAllSliders();
  }

  // ---------------------------------------------------------------- portrait upload
  function uploadFile(file) {
    const max = S.limits.max_upload_bytes || DEFAULT_MAX_UPLOAD;
    if (!ACCEPTED_IMAGES.includes(file.type)) {
      showError(`${file.name}: only PNG, JPEG or WebP images are accepted`);
      return;
    }
    if (file.size > max) {
      showError(`${file.name} is ${fmtBytes(file.size)}; the server accepts at most ${fmtBytes(max)}`);
      els.upload.value = '';
      return;
    }
    const reader = new FileReader();
    reader.onload = () => {
      const maxMsg = S.limits.max_message_bytes;
      if (maxMsg && reader.result.length + 64 > maxMsg) {
        showError(`${file.name} is too large once encoded for upload`);
      } else if (sendWs({ type: 'upload', image: reader.result })) {
        els.uploadNote.textContent = `Sent ${file.name} (${fmtBytes(file.size)}); preparing it…`;
      } else {
        showError('not connected to the server');
      }
    };
    reader.onerror = () => showError(`could not read ${file.name}`);
    reader.readAsDataURL(file);
  }

  // ---------------------------------------------------------------- WebRTC stream
  function waitIceComplete(pc, timeoutMs = 5000) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', onState);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      };
      const onState = () => { if (pc.iceGatheringState === 'complete') done(); };
      const onCandidate = (e) => { if (!e.candidate) done(); };
      const timer = setTimeout(done, timeoutMs);
      pc.addEventListener('icegatheringstatechange', onState);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  function waitAnswer() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer from the server')), ANSWER_TIMEOUT_MS);
      const settle = (fn) => (v) => { clearTimeout(timer); S.answerWaiter = null; fn(v); };
      S.answerWaiter = { resolve: settle(resolve), reject: settle(reject) };
    });
  }

  function resetFrameState() {
    S.frameMsgs.clear();
    S.mouthLog = [];
    S.frameOrder = [];
    S.presented = [];
    S.pairDiffs = [];
    S.rtpOffset = null;
    S.latencies = [];
    S.lastLatencyMs = null;
    S.m2p = [];
    S.lastMotionMs = null;
    S.presentedBatch = [];
    S.fpsTimes = [];
    S.rtcStats = null;
    S.serverStats = null;
  }

  /** Starts a stream in `mode` (restarting a running one). Resolves once the answer is applied. */
  async function start(mode = els.mode.value) {
    await waitForHello();  // the server's hello lists the modes it offers
    if (!S.hello.modes.includes(mode)) throw new Error(`this server does not offer the ${mode} mode`);
    if (S.pc || S.starting) stop();
    const gen = ++S.gen;
    const stale = () => gen !== S.gen;
    S.mode = mode;
    els.mode.value = mode;
    S.starting = true;
    clearError();
    updateStatus();
    try {
      await waitForHello();
      if (stale()) return;
      const pc = new RTCPeerConnection({ iceServers: [] });  // loopback/LAN only: no STUN/TURN
      S.pc = pc;
      resetFrameState();
      pc.onconnectionstatechange = () => {
        if (S.pc !== pc) return;
        if (pc.connectionState === 'failed') {
          showError('WebRTC connection failed');
          stop();
        }
        updateStatus();
      };
      pc.oniceconnectionstatechange = updateStatus;
      pc.ontrack = (ev) => {
        if (S.pc !== pc) return;
        els.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
        els.video.play().catch(() => {});
        watchFrames();
      };
      // The data channel must exist before the offer so that the SDP carries it.
      const dc = pc.createDataChannel('control');
      S.dc = dc;
      dc.onmessage = (ev) => handleMessage(ev.data);
      dc.onopen = dc.onclose = updateStatus;

      if (mode === 'camera') {
        const withMic = document.getElementById('send-mic').checked;
        const cam = await navigator.mediaDevices.getUserMedia({
          video: { width: 640, height: 480 }, audio: withMic,
        });
        if (stale()) { cam.getTracks().forEach((t) => t.stop()); return; }
        S.camera = cam;
        pc.addTransceiver(cam.getVideoTracks()[0], { direction: 'sendrecv', streams: [cam] });
        // the microphone goes to the server's audio source (for audio-driven motion)
        for (const track of cam.getAudioTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [cam] });
      } else if (mode === 'talk') {
        // the voice drives the avatar through the server's audio-to-motion flow
        const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
        if (stale()) { mic.getTracks().forEach((t) => t.stop()); return; }
        S.camera = mic;
        pc.addTransceiver('video', { direction: 'recvonly' });
        // sendrecv: the server sends the voice back, delayed to match the avatar's lips
        pc.addTransceiver(mic.getAudioTracks()[0], { direction: 'sendrecv', streams: [mic] });
      } else {
        pc.addTransceiver('video', { direction: 'recvonly' });
      }

      await pc.setLocalDescription(await pc.createOffer());
      await waitIceComplete(pc);  // non-trickle: the offer carries every candidate
      if (stale()) return;
      const answer = waitAnswer();
      if (!sendWs({ type: 'offer', sdp: pc.localDescription.sdp, mode })) {
        S.answerWaiter.reject(new Error('not connected to the server'));
      }
      const sdp = await answer;
      if (stale()) return;
      await pc.setRemoteDescription({ type: 'answer', sdp });
      S.running = true;
      if (mode === 'sliders') sendAllSliders();
    } catch (e) {
      if (!stale()) {
        showError(e && e.message ? e.message : String(e));
        stop();
      }
      throw e;
    } finally {
      if (!stale()) S.starting = false;
      updateStatus();
    }
  }

  /** Ends the stream; `notify` tells the server (it also notices a closed peer connection). */
  function stop(notify = true) {
    S.gen++;
    if (notify && (S.pc || S.starting)) sendWs({ type: 'stop' });
    if (S.answerWaiter) S.answerWaiter.reject(new Error('stopped'));
    if (S.dc) S.dc.close();
    if (S.pc) S.pc.close();
    if (S.camera) S.camera.getTracks().forEach((t) => t.stop());
    if (S.rvfcHandle !== null) els.video.cancelVideoFrameCallback(S.rvfcHandle);
    S.rvfcHandle = null;
    S.dc = null;
    S.pc = null;
    S.camera = null;
    S.running = false;
    S.starting = false;
    // nothing of the ended stream may reach the server afterwards
    S.presentedBatch = [];
    S.pendingSlots = {};
    if (S.controlTimer !== null) clearTimeout(S.controlTimer);
    S.controlTimer = null;
    els.video.srcObject = null;
    updateStatus();
  }

  /** Mode selector: idle <-> sliders switch in place; camera and talk need a new offer (their track). */
  function changeMode(mode) {
    const old = S.mode;
    S.mode = mode;
    if (!S.pc && !S.starting) return;
    const needsTrack = (m) => m === 'camera' || m === 'talk';
    if (needsTrack(mode) || needsTrack(old)) {
      start(mode).catch(() => {});
    } else {
      send({ type: 'mode', mode });
      if (mode === 'sliders') sendAllSliders();
      updateStatus();
    }
  }

  // ---------------------------------------------------------------- clock offset
  function sendPing() {
    send({ type: 'ping', client_ms: performance.now() });
  }

  /** offset = server clock - client clock, from the ping with the smallest rtt of the last 10. */
  function onPong(msg) {
    const now = performance.now();
    const rtt = now - msg.client_ms;
    if (!(rtt >= 0)) return;
    S.pings.push({ rtt, offset: msg.server_ms + rtt / 2 - now });
    if (S.pings.length > PING_HISTORY) S.pings.shift();
    const best = S.pings.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    S.clockOffset = best.offset;
    S.clockRtt = best.rtt;
  }

  // ---------------------------------------------------------------- glass-to-glass latency
  function onFrameMessage(msg) {
    const key = mod32(msg.pts);
    if (!S.frameMsgs.has(key)) S.frameOrder.push(key);
    S.frameMsgs.set(key, {
      captureMs: msg.capture_ms, motionMs: msg.motion_ms, arrival: performance.now(), mouth: msg.mouth,
    });
    while (S.frameOrder.length > FRAME_HISTORY) S.frameMsgs.delete(S.frameOrder.shift());
  }

  /** Registers the per-frame callback once per stream; it re-registers itself every frame. */
  function watchFrames() {
    if (!hasRvfc || S.rvfcHandle !== null) return;
    S.rvfcHandle = els.video.requestVideoFrameCallback(onVideoFrame);
  }

  function onVideoFrame(now, md) {
    S.rvfcHandle = null;
    if (!S.pc) return;
    S.framesPresented++;
    S.fpsTimes.push(now);
    while (S.fpsTimes.length && S.fpsTimes[0] < now - 1000) S.fpsTimes.shift();
    const shown = md.expectedDisplayTime ?? md.presentationTime ?? now;
    if (typeof md.rtpTimestamp === 'number') {
      S.sawRtp = true;
      S.presented.push({ rtp: md.rtpTimestamp, recv: md.receiveTime ?? now, shown });
      if (S.presented.length > FRAME_HISTORY) S.presented.shift();
      S.presentedBatch.push({ rtp: md.rtpTimestamp, shown });
      if (S.presentedBatch.length > FRAME_HISTORY) S.presentedBatch.shift();
    }
    S.rvfcHandle = els.video.requestVideoFrameCallback(onVideoFrame);
  }

  /**
   * Pairs presented frames with frame messages. The RTP timestamp is pts + a per-stream constant
   * (mod 2^32): each settled frame is paired with the frame message that arrived closest to the
   * frame's receive time, and the most common (rtp - pts) difference of recent pairs is the offset.
   * With the offset known, a frame's latency is its display time on the server clock - capture_ms.
   */
  function processPresented() {
    const settleBefore = performance.now() - PAIR_SETTLE_MS;
    while (S.presented.length && S.presented[0].recv < settleBefore) {
      const f = S.presented.shift();
      learnRtpOffset(f);
      if (S.rtpOffset === null || S.clockOffset === null) continue;
      const m = S.frameMsgs.get(mod32(f.rtp - S.rtpOffset));
      if (!m) continue;
      if (typeof m.mouth === 'number') {  // talk mode: how open the shown frame's mouth is
        S.mouthLog.push({ shown: f.shown, mouth: m.mouth });
        if (S.mouthLog.length > FRAME_HISTORY) S.mouthLog.shift();
      }
      S.lastLatencyMs = f.shown + S.clockOffset - m.captureMs;
      S.latencies.push(S.lastLatencyMs);
      if (S.latencies.length > FRAME_HISTORY) S.latencies.shift();
      // motion-to-photon: the first frame showing each new motion (a held slider is not latency)
      if (typeof m.motionMs === 'number' && m.motionMs !== S.lastMotionMs) {
        S.lastMotionMs = m.motionMs;
        S.m2p.push(f.shown + S.clockOffset - m.motionMs);
        if (S.m2p.length > FRAME_HISTORY) S.m2p.shift();
      }
    }
  }

  function learnRtpOffset(f) {
    let bestKey = null;
    let bestDt = Infinity;
    for (let i = S.frameOrder.length - 1; i >= 0 && i >= S.frameOrder.length - 90; i--) {
      const key = S.frameOrder[i];
      const dt = Math.abs(S.frameMsgs.get(key).arrival - f.recv);
      if (dt < bestDt) { bestDt = dt; bestKey = key; }
    }
    if (bestKey === null || bestDt > 500) return;
    S.pairDiffs.push(mod32(f.rtp - bestKey));
    if (S.pairDiffs.length > PAIR_HISTORY) S.pairDiffs.shift();
    const counts = new Map();
    let mode = null;
    let modeCount = 0;
    for (const d of S.pairDiffs) {
      const c = (counts.get(d) || 0) + 1;
      counts.set(d, c);
      if (c > modeCount) { modeCount = c; mode = d; }
    }
    if (modeCount >= 3) S.rtpOffset = mode;
  }

  /** Every second: the presented frames on the server clock, for the server's own g2g figures. */
  function sendPresentedBatch() {
    // only for a running stream, once the RTP offset is known (the server matches frames by pts)
    if (!S.pc || !S.presentedBatch.length || S.clockOffset === null || S.rtpOffset === null) return;
    const frames = S.presentedBatch.map((f) => ({
      rtp_timestamp: f.rtp, pts: mod32(f.rtp - S.rtpOffset), presented_ms: f.shown + S.clockOffset,
    }));
    // server clock - wall clock: puts the camera's and microphone's capture times (RTCP sender
    // reports, on the wall clock) on the server clock
    const wallOffset = S.clockOffset - performance.timeOrigin;
    if (send({ type: 'presented', frames, wall_offset_ms: wallOffset })) S.presentedBatch = [];
  }

  // ---------------------------------------------------------------- stats overlay
  async function pollRtcStats() {
    const pc = S.pc;
    if (!pc) return;
    let report;
    try {
      report = await pc.getStats();
    } catch (e) {
      return;
    }
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || (s.kind || s.mediaType) !== 'video') return;
      S.rtcStats = {
        jitterMs: s.jitterBufferEmittedCount ? (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount : null,
        framesDropped: s.framesDropped,
        framesDecoded: s.framesDecoded,
        decodeMs: s.framesDecoded ? (1000 * s.totalDecodeTime) / s.framesDecoded : null,
        width: s.frameWidth,
        height: s.frameHeight,
      };
    });
  }

  function renderOverlay() {
    if (els.overlay.hidden) return;
    const lines = [];
    lines.push(`fps ${fmt(S.fpsTimes.length, 0)}   presented ${S.framesPresented}`);
    const ss = S.serverStats;
    if (ss) {
      lines.push(`server: fps ${fmt(ss.fps)}   dropped ${ss.dropped ?? '–'}`);
      for (const [stage, ms] of Object.entries(ss.stage_ms || {})) {
        lines.push(`  ${stage.padEnd(12)} ${fmt(ms)} ms`);
      }
      const sg = ss.glass_to_glass_ms;
      if (sg) lines.push(`  server g2g p50 ${fmt(sg.p50)}  p90 ${fmt(sg.p90)}  p99 ${fmt(sg.p99)} ms`);
      const sm = ss.motion_to_photon_ms;
      if (sm) lines.push(`  server m2p p50 ${fmt(sm.p50)}  p90 ${fmt(sm.p90)}  p99 ${fmt(sm.p99)} ms`);
    }
    if (!hasRvfc) {
      lines.push('glass-to-glass: not supported by this browser');
    } else if (S.framesPresented > 0 && !S.sawRtp) {
      lines.push('glass-to-glass: this browser gives no RTP timestamps');
    } else {
      const q = g2g();
      lines.push(`glass-to-glass p50 ${fmt(q.p50)}  p90 ${fmt(q.p90)}  p99 ${fmt(q.p99)} ms (n=${S.latencies.length})`);
      const mq = m2p();
      lines.push(`motion-to-photon p50 ${fmt(mq.p50)}  p90 ${fmt(mq.p90)}  p99 ${fmt(mq.p99)} ms (n=${S.m2p.length})`);
    }
    lines.push(`clock offset ${fmt(S.clockOffset)} ms (rtt ${fmt(S.clockRtt)} ms)`);
    const r = S.rtcStats;
    if (r) {
      lines.push(`webrtc ${r.width ?? '?'}x${r.height ?? '?'}   decoded ${r.framesDecoded ?? '–'}   dropped ${r.framesDropped ?? '–'}`);
      lines.push(`  decode ${fmt(r.decodeMs, 2)} ms   jitter buffer ${fmt(r.jitterMs)} ms`);
    }
    els.overlay.textContent = lines.join('\n');
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    els.start.addEventListener('click', () => start(els.mode.value).catch(() => {}));
    els.stop.addEventListener('click', () => stop());
    // The avatar's audio (talk mode) plays only on request: hearing your own voice late is distracting.
    els.hearAvatar.addEventListener('change', () => { els.video.muted = !els.hearAvatar.checked; });
    els.mode.addEventListener('change', () => changeMode(els.mode.value));
    els.reset.addEventListener('click', resetSliders);
    els.upload.addEventListener('change', () => {
      const file = els.upload.files && els.upload.files[0];
      if (file) uploadFile(file);
    });
    els.showStats.addEventListener('change', () => {
      els.overlay.hidden = !els.showStats.checked;
      renderOverlay();
    });
    S.mode = els.mode.value;
    setInterval(sendPing, PING_INTERVAL_MS);
    setInterval(processPresented, 100);
    setInterval(() => { sendPresentedBatch(); pollRtcStats(); }, 1000);
    setInterval(renderOverlay, 500);
    renderOverlay();
    updateStatus();
    connectSocket();
  }

  // Test hook for headless browser tests (drives the page without clicking).
  window.pirender = {
    state: () => ({
      connected: isConnected(),
      mode: S.mode,
      framesPresented: S.framesPresented,
      lastLatencyMs: S.lastLatencyMs,
      g2g: g2g(),
      m2p: m2p(),
      lastError: S.lastError,
      // extras for debugging
      serverConnected: S.wsOpen,
      dataChannel: S.dc ? S.dc.readyState : null,
      slots: S.slots.map((s) => s.name),
      clockOffsetMs: S.clockOffset,
      rtpOffset: S.rtpOffset,
      rvfcSupported: hasRvfc,
    }),
    setSlider,
    start: (mode) => start(mode),
    mouthLog: () => S.mouthLog.slice(),
    localStream: () => S.camera,  // the camera / microphone sent (latency measurements watch it)
    stop: () => stop(),
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
