// Credentials for the bundled pages, which never hold an API key.
//
// `GET <api>/auth/config` (public) says whether the server wants credentials. With auth off
// (local use) nothing is sent. With auth on, the page uses a short-lived session token from,
// in order:
//   1. the page URL's fragment, `#token=...` (fragments never reach a server or a log);
//   2. the operator's backend named by the config's `token_url`: the page fetches it with its
//      cookies, and the backend, which holds the API key, answers what `POST /v1/tokens`
//      answered it (`{"token", "expires_at"}`).
// A token is fetched again shortly before it expires.

const REFRESH_MARGIN_S = 30;

let cached = null; // { token, expiresAt (unix s) or null }

function fragmentToken() {
  const hash = new URLSearchParams(window.location.hash.slice(1));
  return hash.get('token');
}

/** A session token for the API at `apiBase` (a URL ending in `/v1/`), or null if none is needed. */
export async function sessionToken(apiBase) {
  const now = Date.now() / 1000;
  if (cached && (cached.expiresAt === null || cached.expiresAt - REFRESH_MARGIN_S > now)) {
    return cached.token;
  }
  const fromFragment = fragmentToken();
  if (fromFragment) {
    cached = { token: fromFragment, expiresAt: null };
    return fromFragment;
  }
  const response = await fetch(new URL('auth/config', apiBase));
  const config = response.ok ? await response.json() : { auth: false };
  if (!config.auth) {
    cached = { token: null, expiresAt: null };
    return null;
  }
  if (!config.token_url) {
    throw new Error('This server needs credentials: open the page with #token=<session token>.');
  }
  const issued = await fetch(config.token_url, { method: 'POST', credentials: 'include' });
  if (!issued.ok) throw new Error(`Could not get a session token (HTTP ${issued.status}).`);
  const body = await issued.json();
  cached = { token: String(body.token), expiresAt: Number(body.expires_at) || null };
  return cached.token;
}

/** `extra` headers plus `Authorization: Bearer` when a token is needed. */
export async function authHeaders(apiBase, extra = {}) {
  const token = await sessionToken(apiBase);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

/** `url` with `?access_token=` for what cannot carry headers (EventSource, WebSocket). */
export async function withAccessToken(apiBase, url) {
  const token = await sessionToken(apiBase);
  if (!token) return url;
  const out = new URL(url);
  out.searchParams.set('access_token', token);
  return out.href;
}
