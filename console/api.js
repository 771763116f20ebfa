// The control API as the console uses it. The token lives in sessionStorage (this tab only) and
// travels in the Authorization header, or as a WebSocket subprotocol: never in a URL, so never
// in an access log.

const TOKEN_KEY = 'tally.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An error answer from the API: its status and the server's `error` message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get() ?? ''}`, ...extra };
}

function unauthorized() {
  window.dispatchEvent(new Event('tally:unauthorized'));
}

/** Calls a JSON route; resolves to the parsed body (null for 204), throws ApiError otherwise. */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: authHeaders(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'tally is unreachable');
  }
  if (response.status === 401) unauthorized();
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data?.error ?? response.statusText);
  return data;
}

/** Fetches an image with the token: `{ blob }`, or `{ status, error }` when there is none
 * (404 until a camera's first keyframe, 422 if tally cannot decode it). */
export async function fetchImage(path) {
  const response = await fetch(path, { headers: authHeaders(), cache: 'no-store' });
  if (response.status === 401) unauthorized();
  if (response.ok) return { blob: await response.blob() };
  const data = await response.json().catch(() => null);
  return { status: response.status, error: data?.error ?? response.statusText };
}

export const eventPath = (event, ...rest) =>
  ['/api/events', event, ...rest].map((p, i) => (i ? encodeURIComponent(p) : p)).join('/');

/**
 * Keeps a WebSocket open to an event's notifications, reconnecting with backoff (0.5 s doubling
 * to 10 s, reset once a `hello` arrives). tally sends `camera_stats` every 2 s, so a link silent
 * for 7 s is treated as dead even if the browser has not noticed. `onMessage` gets every parsed
 * message; `onLink` gets `{ up: true }` or `{ up: false, retryIn }` (ms).
 */
export function subscribe(event, { onMessage, onLink }) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}${eventPath(event, 'ws')}`;
  let socket = null;
  let delay = 500;
  let retry = null;
  let lastMessage = 0;
  let closed = false;

  function open() {
    lastMessage = Date.now();
    socket = new WebSocket(url, ['tally', `bearer.${token.get() ?? ''}`]);
    socket.onmessage = (m) => {
      lastMessage = Date.now();
      let message;
      try {
        message = JSON.parse(m.data);
      } catch {
        return;
      }
      if (message.type === 'hello') {
        delay = 500;
        onLink({ up: true });
      }
      onMessage(message);
    };
    socket.onclose = lost;
  }

  // Forgets the current socket and schedules the next attempt.
  function lost() {
    if (socket) {
      socket.onmessage = socket.onclose = null;
      socket.close();
      socket = null;
    }
    if (closed || retry) return;
    onLink({ up: false, retryIn: delay });
    retry = setTimeout(() => {
      retry = null;
      open();
    }, delay);
    delay = Math.min(delay * 2, 10_000);
  }

  const watchdog = setInterval(() => {
    if (socket && Date.now() - lastMessage > 7000) lost();
  }, 1000);

  open();
  return {
    /** Drops the connection and reconnects: the fresh `hello` resyncs the whole state. */
    resync: lost,
    close() {
      closed = true;
      clearInterval(watchdog);
      clearTimeout(retry);
      lost();
    },
  };
}
