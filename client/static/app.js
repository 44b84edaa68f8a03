// Browser client for webrtc-stt: sends the microphone over WebRTC and shows the
// transcript events the server sends back on the `transcripts` data channel.
//
// Tests and kiosks drive it through `window.webrtcStt` and `?autostart=1`.

import { authHeaders } from './auth.js';

const ICE_GATHERING_TIMEOUT_MS = 5000;
const API_BASE = new URL('v1/', window.location.href).href;
// Within this many pixels of the bottom counts as "following" the captions;
// anyone who scrolled further up to read is left where they are.
const AUTOSCROLL_SLACK_PX = 48;

const STATE_LABELS = {
  idle: 'Idle',
  connecting: 'Connecting…',
  connected: 'Connected',
  failed: 'Failed',
  closed: 'Closed',
};

const els = {
  state: document.getElementById('state'),
  stateLabel: document.getElementById('state-label'),
  start: document.getElementById('start'),
  stop: document.getElementById('stop'),
  language: document.getElementById('language'),
  error: document.getElementById('error'),
  captions: document.getElementById('captions'),
  details: document.getElementById('details'),
};

/** An error answer of the server: `{"error": {"code", "message"}}` with its HTTP status. */
class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
  }
}

let state = 'idle';
// The running session, or null. Callbacks of a session compare against it so that
// late events of a stopped session change nothing.
let current = null;

const api = {
  /** idle | connecting | connected | failed | closed */
  get state() {
    return state;
  },
  /** Every event received on the data channel in this session, parsed, in order. */
  events: [],
  /** The server's session id once the offer was answered. */
  sessionId: null,
  /** The last error message shown to the person, or null. */
  error: null,
  start,
  stop,
};
window.webrtcStt = api;

function setState(next) {
  state = next;
  els.state.dataset.state = next;
  els.stateLabel.textContent = STATE_LABELS[next];
  const busy = next === 'connecting' || next === 'connected';
  els.start.disabled = busy;
  els.stop.disabled = !busy;
  els.language.disabled = busy;
}

function showError(message) {
  api.error = message;
  els.error.textContent = message;
}

function clearError() {
  api.error = null;
  els.error.textContent = '';
}

/** Start a session: microphone, peer connection, offer, answer. Resolves once the offer is answered. */
async function start() {
  if (current) return;
  const session = {
    pc: null,
    channel: null,
    stream: null,
    sessionId: null,
    abort: new AbortController(),
    segments: new Map(),
  };
  current = session;
  clearError();
  els.captions.replaceChildren();
  els.details.textContent = '';
  api.events.length = 0;
  api.sessionId = null;
  setState('connecting');

  try {
    session.stream = await openMicrophone();
    if (current !== session) {
      stopTracks(session.stream);
      return;
    }

    const pc = new RTCPeerConnection();
    session.pc = pc;
    // The channel must exist before the offer so that the offer carries an
    // m=application section; the server sends every event on it.
    const channel = pc.createDataChannel('transcripts');
    channel.binaryType = 'arraybuffer';
    session.channel = channel;
    channel.onmessage = (message) => {
      if (current === session) onMessage(session, message.data);
    };
    channel.onclose = () => {
      // The server ended the session (or the connection broke after it was up).
      if (current === session && state === 'connected') finish(session, 'closed');
    };

    for (const track of session.stream.getAudioTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly', streams: [session.stream] });
    }

    const onStateChange = () => {
      if (current === session) onConnectionState(session);
    };
    pc.onconnectionstatechange = onStateChange;
    pc.oniceconnectionstatechange = onStateChange;

    await pc.setLocalDescription(await pc.createOffer());
    // Non-trickle: the offer carries all candidates, so the exchange is one POST.
    await iceGatheringComplete(pc, session.abort.signal);
    const answer = await postOffer(pc.localDescription, selectedLanguage(), session.abort.signal);
    if (current !== session) return;
    session.sessionId = answer.session_id;
    api.sessionId = answer.session_id;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  } catch (err) {
    // Errors of a session stopped meanwhile (aborted fetch, closed pc) are expected.
    if (current === session) fail(session, describeError(err));
  }
}

/** Stop the running session. Resolves once the server was told (DELETE /v1/sessions/{id}). */
async function stop() {
  const session = current;
  if (!session) return;
  await finish(session, 'closed');
}

function fail(session, message) {
  showError(message);
  finish(session, 'failed');
}

function finish(session, nextState) {
  current = null;
  setState(nextState);
  const ended = endSession(session);
  teardown(session);
  return ended;
}

function teardown(session) {
  session.abort.abort();
  if (session.channel) session.channel.close();
  if (session.pc) session.pc.close();
  stopTracks(session.stream);
}

async function endSession(session) {
  if (!session.sessionId) return;
  try {
    // keepalive lets the request outlive the page when it is being closed.
    await fetch(`v1/sessions/${encodeURIComponent(session.sessionId)}`, {
      method: 'DELETE',
      headers: await authHeaders(API_BASE),
      keepalive: true,
    });
  } catch (err) {
    // The server may already be gone; it ends idle sessions on its own.
    console.warn('webrtc-stt: could not end the session', err);
  }
}

function stopTracks(stream) {
  if (!stream) return;
  for (const track of stream.getTracks()) track.stop();
}

async function openMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(
      'This browser cannot use the microphone here. Open the page over HTTPS (or on localhost).',
    );
  }
  // Speech models are trained on unprocessed audio; browser noise suppression and
  // gain control tend to hurt recognition more than they help.
  return navigator.mediaDevices.getUserMedia({
    audio: {
      channelCount: 1,
      echoCancellation: false,
      noiseSuppression: false,
      autoGainControl: false,
    },
    video: false,
  });
}

function iceGatheringComplete(pc, signal) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    // Gathering can stall on some networks; the candidates found so far are
    // already in localDescription and usually enough.
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      signal.removeEventListener('abort', done);
      resolve();
    }
    function onChange() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', onChange);
    signal.addEventListener('abort', done);
  });
}

async function postOffer(description, language, signal) {
  const body = { sdp: description.sdp, type: description.type };
  if (language) body.options = { language };
  const response = await fetch('v1/offer', {
    method: 'POST',
    headers: await authHeaders(API_BASE, { 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
    signal,
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (err) {
    // A proxy in front of the server may answer with HTML; reported below.
  }
  if (!response.ok) {
    const error = payload && payload.error;
    throw new HttpError(
      response.status,
      error && error.code ? String(error.code) : null,
      error && error.message ? String(error.message) : response.statusText,
    );
  }
  if (!payload || typeof payload.sdp !== 'string' || payload.type !== 'answer') {
    throw new Error('The server sent an invalid answer.');
  }
  return payload;
}

function onConnectionState(session) {
  const pc = session.pc;
  // Firefox before 113 has no connectionState; the ICE state is close enough.
  const value = pc.connectionState || iceToConnectionState(pc.iceConnectionState);
  if (value === 'connected' && state === 'connecting') {
    setState('connected');
  } else if (value === 'failed') {
    fail(
      session,
      'The connection to the server failed (ICE). A firewall or network may block WebRTC traffic.',
    );
  } else if (value === 'closed') {
    finish(session, 'closed');
  }
}

function iceToConnectionState(ice) {
  if (ice === 'completed') return 'connected';
  return ice;
}

function describeError(err) {
  if (err instanceof HttpError) {
    const code = err.code ? `, ${err.code}` : '';
    return `The server refused to start a session: ${err.message} (HTTP ${err.status}${code}).`;
  }
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Microphone access was denied. Allow the microphone for this site and press Start again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one and press Start again.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The microphone could not be opened; another application may be using it.';
    case 'TypeError':
      return 'Could not reach the server. Check the connection and try again.';
    default:
      return (err && err.message) || String(err);
  }
}

function selectedLanguage() {
  return els.language.value || null;
}

function decodeMessage(data) {
  if (typeof data === 'string') return data;
  return new TextDecoder('utf-8').decode(data);
}

function onMessage(session, data) {
  let event;
  try {
    event = JSON.parse(decodeMessage(data));
  } catch (err) {
    console.warn('webrtc-stt: ignoring a message that is not JSON', err);
    return;
  }
  if (!event || typeof event.type !== 'string') return;
  api.events.push(event);
  switch (event.type) {
    case 'ready':
      showReady(event);
      break;
    case 'speech_start':
      updateCaptions(() => segmentElement(session, event.segment_id, event.start));
      break;
    case 'partial':
      updateCaptions(() => renderPartial(session, event));
      break;
    case 'final':
      updateCaptions(() => renderFinal(session, event));
      break;
    case 'speech_end': {
      const el = session.segments.get(String(event.segment_id));
      if (el) el.dataset.ended = 'true';
      break;
    }
    case 'error': {
      const code = event.code ? ` (${event.code})` : '';
      showError(`Server error: ${event.message || 'unknown error'}${code}`);
      break;
    }
    default:
      // Newer servers may send event types this page does not know yet.
      break;
  }
}

function showReady(event) {
  const parts = [];
  if (event.model) parts.push(`Model ${event.model}`);
  if (event.language) parts.push(`language ${event.language}`);
  els.details.textContent = parts.join(' · ');
}

/** Run `mutate` on the captions and keep them scrolled to the end if they were. */
function updateCaptions(mutate) {
  const box = els.captions;
  const following = box.scrollHeight - box.scrollTop - box.clientHeight <= AUTOSCROLL_SLACK_PX;
  mutate();
  if (following) box.scrollTop = box.scrollHeight;
}

/** The one element of a segment, created (as a partial) when first seen. */
function segmentElement(session, segmentId, start) {
  const key = String(segmentId);
  let el = session.segments.get(key);
  if (!el) {
    el = document.createElement('p');
    el.className = 'segment partial';
    el.dataset.segmentId = key;
    el.setAttribute('aria-busy', 'true');
    session.segments.set(key, el);
    els.captions.append(el);
  }
  if (typeof start === 'number' && !el.dataset.time) el.dataset.time = formatTime(start);
  return el;
}

function renderPartial(session, event) {
  const el = segmentElement(session, event.segment_id, event.start);
  // A final replaces every partial; a partial arriving late must not undo it.
  if (el.classList.contains('final')) return;
  const text = String(event.text || '');
  let committed = String(event.committed || '');
  if (!text.startsWith(committed)) committed = '';
  const stable = document.createElement('span');
  stable.className = 'committed';
  stable.textContent = committed;
  const tentative = document.createElement('span');
  tentative.className = 'tentative';
  tentative.textContent = text.slice(committed.length);
  el.replaceChildren(stable, tentative);
}

function renderFinal(session, event) {
  const el = segmentElement(session, event.segment_id, event.start);
  el.classList.remove('partial');
  el.classList.add('final');
  el.removeAttribute('aria-busy');
  if (event.language) el.lang = event.language;
  el.textContent = String(event.text || '');
}

function formatTime(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(whole / 60);
  return `${minutes}:${String(whole % 60).padStart(2, '0')}`;
}

function init() {
  const params = new URLSearchParams(window.location.search);
  const language = params.get('language');
  if (language !== null) {
    if (![...els.language.options].some((option) => option.value === language)) {
      els.language.add(new Option(language, language));
    }
    els.language.value = language;
  }
  els.start.addEventListener('click', () => {
    start();
  });
  els.stop.addEventListener('click', () => {
    stop();
  });
  // Free the server's slot when the tab goes away mid-session.
  window.addEventListener('pagehide', () => {
    stop();
  });
  setState('idle');
  if (params.get('autostart') === '1') start();
}

init();
