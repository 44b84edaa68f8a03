// A small WHIP client (RFC 9725): sends the microphone to a WHIP endpoint, trickles its ICE
// candidates with PATCH, and shows the captions of the session's Server-Sent Events.
//
// Query parameters: ?endpoint=URL (default: this server's /v1/whip), ?token=BEARER (prefer
// #token=..., see auth.js: a fragment stays out of logs), ?trickle=0 (wait for all
// candidates and send them in the offer), ?autostart=1.
// Tests drive the page through `window.whipStt`.

import * as auth from './auth.js';

const EVENTS_REL = 'urn:ietf:params:whip:ext:webrtc-stt:events';
const ICE_GATHERING_TIMEOUT_MS = 5000;

const params = new URLSearchParams(window.location.search);
const endpoint = new URL(params.get('endpoint') || '../v1/whip', window.location.href).href;
const token = params.get('token');
const trickle = params.get('trickle') !== '0';
const apiBase = new URL('./', endpoint).href; // the endpoint is <api>/v1/whip

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
  error: document.getElementById('error'),
  captions: document.getElementById('captions'),
  details: document.getElementById('details'),
};

let state = 'idle';
let current = null;

const api = {
  get state() {
    return state;
  },
  /** Every event received over SSE, parsed, in order. */
  events: [],
  /** The WHIP session URL (Location), its ETag and the events URL (Link). */
  resourceUrl: null,
  etag: null,
  eventsUrl: null,
  /** HTTP status of every trickle PATCH, in order. */
  patchStatuses: [],
  deleteStatus: null,
  /** True once the server said the session's events are over. */
  ended: false,
  error: null,
  start,
  stop,
  /** Text of every final so far, joined. */
  finalText() {
    return api.events
      .filter((e) => e.type === 'final' && e.text)
      .map((e) => e.text)
      .join(' ');
  },
};
window.whipStt = api;

function setState(next) {
  state = next;
  els.state.dataset.state = next;
  els.stateLabel.textContent = STATE_LABELS[next];
  const busy = next === 'connecting' || next === 'connected';
  els.start.disabled = busy;
  els.stop.disabled = !busy;
}

function showError(message) {
  api.error = message;
  els.error.textContent = message;
}

async function authHeaders(extra) {
  if (token) return { ...extra, Authorization: `Bearer ${token}` };
  return auth.authHeaders(apiBase, extra);
}

async function eventsUrlWithToken(url) {
  if (!token) return auth.withAccessToken(apiBase, url);
  const out = new URL(url);
  out.searchParams.set('access_token', token);
  return out.href;
}

async function start() {
  if (current) return;
  const session = { pc: null, stream: null, source: null, segments: new Map(), patches: null };
  current = session;
  api.events.length = 0;
  api.patchStatuses.length = 0;
  api.ended = false;
  api.deleteStatus = null;
  els.captions.replaceChildren();
  els.error.textContent = '';
  setState('connecting');
  try {
    session.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: false,
    });
    const pc = new RTCPeerConnection();
    session.pc = pc;
    for (const track of session.stream.getAudioTracks()) {
      pc.addTransceiver(track, { direction: 'sendonly' });
    }
    pc.onconnectionstatechange = () => {
      if (current !== session) return;
      if (pc.connectionState === 'connected') setState('connected');
      if (pc.connectionState === 'failed') fail(session, 'ICE failed: no media path to the server.');
    };

    // Candidates found before the session URL is known wait here; PATCHes go out in order.
    const early = [];
    pc.onicecandidate = (event) => {
      if (!trickle || current !== session) return;
      const fragment = candidateFragment(pc, event.candidate);
      if (session.patches) session.patches = session.patches.then(() => patch(fragment));
      else early.push(fragment);
    };

    await pc.setLocalDescription(await pc.createOffer());
    if (!trickle) await gatheringComplete(pc);
    const response = await fetch(endpoint, {
      method: 'POST',
      headers: await authHeaders({ 'Content-Type': 'application/sdp' }),
      body: pc.localDescription.sdp,
    });
    if (response.status !== 201) {
      throw new Error(`WHIP endpoint answered ${response.status}: ${await response.text()}`);
    }
    api.resourceUrl = new URL(response.headers.get('Location'), endpoint).href;
    api.etag = response.headers.get('ETag');
    const events = parseLinks(response.headers.get('Link') || '', endpoint).find(
      (link) => link.rel === EVENTS_REL,
    );
    api.eventsUrl = events ? events.url : null;
    if (api.eventsUrl) followEvents(session, await eventsUrlWithToken(api.eventsUrl));
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    session.patches = Promise.resolve();
    for (const fragment of early) session.patches = session.patches.then(() => patch(fragment));
  } catch (err) {
    if (current === session) fail(session, (err && err.message) || String(err));
  }
}

/** End the WHIP session (DELETE); captions keep coming until the server's `end` event. */
async function stop() {
  const session = current;
  if (!session) return;
  current = null;
  if (api.resourceUrl) {
    try {
      const response = await fetch(api.resourceUrl, { method: 'DELETE', headers: await authHeaders() });
      api.deleteStatus = response.status;
    } catch (err) {
      console.warn('whip: DELETE failed', err);
    }
  }
  teardown(session);
  setState('closed');
}

function fail(session, message) {
  showError(message);
  current = null;
  teardown(session);
  if (session.source) session.source.close();
  setState('failed');
}

function teardown(session) {
  if (session.pc) session.pc.close();
  if (session.stream) for (const track of session.stream.getTracks()) track.stop();
}

async function patch(fragment) {
  const headers = await authHeaders({ 'Content-Type': 'application/trickle-ice-sdpfrag' });
  if (api.etag) headers['If-Match'] = api.etag;
  try {
    const response = await fetch(api.resourceUrl, { method: 'PATCH', headers, body: fragment });
    api.patchStatuses.push(response.status);
  } catch (err) {
    api.patchStatuses.push(0);
  }
}

/** An RFC 8840 fragment with one candidate, or end-of-candidates when `candidate` is null. */
function candidateFragment(pc, candidate) {
  const sdp = pc.localDescription ? pc.localDescription.sdp : '';
  const ufrag = (sdp.match(/^a=ice-ufrag:(.*)$/m) || [])[1];
  const pwd = (sdp.match(/^a=ice-pwd:(.*)$/m) || [])[1];
  const mid = candidate && candidate.sdpMid !== null ? candidate.sdpMid : '0';
  const lines = [];
  if (ufrag) lines.push(`a=ice-ufrag:${ufrag.trim()}`);
  if (pwd) lines.push(`a=ice-pwd:${pwd.trim()}`);
  lines.push('m=audio 9 UDP/TLS/RTP/SAVPF 0', `a=mid:${mid}`);
  if (candidate && candidate.candidate) lines.push(`a=${candidate.candidate}`);
  else lines.push('a=end-of-candidates');
  return lines.join('\r\n') + '\r\n';
}

function gatheringComplete(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** `Link` header values (RFC 8288), URLs resolved against `base`. */
function parseLinks(header, base) {
  const links = [];
  const pattern = /<([^>]*)>((?:\s*;\s*[^;,=]+(?:=(?:"[^"]*"|[^;,]*))?)*)/g;
  for (const match of header.matchAll(pattern)) {
    const rel = (match[2].match(/;\s*rel="?([^";,]+)"?/) || [])[1];
    let url = match[1];
    try {
      url = new URL(match[1], base).href;
    } catch (err) {
      // stun:/turn: URLs stay as they are.
    }
    links.push({ url, rel });
  }
  return links;
}

function followEvents(session, url) {
  const source = new EventSource(url);
  session.source = source;
  source.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (err) {
      return;
    }
    api.events.push(event);
    render(session, event);
  };
  source.addEventListener('end', () => {
    api.ended = true;
    source.close();
  });
}

function render(session, event) {
  switch (event.type) {
    case 'ready':
      els.details.textContent = `Model ${event.model} · language ${event.language}`;
      break;
    case 'partial': {
      const el = segment(session, event.segment_id);
      if (!el.classList.contains('final')) el.textContent = event.text;
      break;
    }
    case 'final': {
      const el = segment(session, event.segment_id);
      el.classList.remove('partial');
      el.classList.add('final');
      el.removeAttribute('aria-busy');
      el.textContent = event.text;
      break;
    }
    case 'error':
      showError(`Server error: ${event.message} (${event.code})`);
      break;
    default:
      break;
  }
}

function segment(session, id) {
  const key = String(id);
  let el = session.segments.get(key);
  if (!el) {
    el = document.createElement('p');
    el.className = 'segment partial';
    el.dataset.segmentId = key;
    el.setAttribute('aria-busy', 'true');
    session.segments.set(key, el);
    els.captions.append(el);
  }
  return el;
}

els.start.addEventListener('click', () => start());
els.stop.addEventListener('click', () => stop());
setState('idle');
if (params.get('autostart') === '1') start();
