// tally operator console: sign-in, the events list, and one event's vision-mixer view.
// Routes live in the URL fragment (#/, #/events/{id}), which never reaches the server.

import { api, token } from './api.js';
import { EventView } from './event.js';
import { $, toast, fmt } from './ui.js';

const views = ['view-signin', 'view-events', 'view-event'];
let current = null; // the open EventView, if any

function show(view) {
  for (const id of views) $(id).hidden = id !== view;
  const signedIn = view !== 'view-signin';
  $('sign-out').hidden = !signedIn;
  $('crumbs').hidden = view !== 'view-event';
  $('open-setup').hidden = view !== 'view-event';
  $('link-state').hidden = view !== 'view-event';
  document.body.dataset.view = view;
}

function route() {
  current?.stop();
  current = null;
  if (!token.get()) {
    show('view-signin');
    $('token').focus();
    return;
  }
  const match = location.hash.match(/^#\/events\/([^/]+)$/);
  if (match) openEvent(decodeURIComponent(match[1]));
  else openEvents();
}

// ---- sign-in ---------------------------------------------------------------------------------

$('signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const value = $('token').value.trim();
  token.set(value);
  try {
    await api('/api/events');
    $('token').value = '';
    $('signin-error').textContent = '';
    route();
  } catch (err) {
    token.clear();
    $('signin-error').textContent = err.status === 401 ? 'Wrong token' : err.message;
  }
});

$('sign-out').addEventListener('click', () => {
  token.clear();
  location.hash = '#/';
  route();
});

// Any 401 means the token is wrong or was changed: back to sign-in.
window.addEventListener('tally:unauthorized', () => {
  if (!token.get()) return;
  token.clear();
  route();
  $('signin-error').textContent = 'The token was refused; sign in again';
});

/** A form's fields as trimmed strings. */
function fields(form) {
  return Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()]));
}

// ---- events list -----------------------------------------------------------------------------

async function openEvents() {
  show('view-events');
  document.title = 'Events · tally';
  $('events-error').textContent = '';
  try {
    renderEvents(await api('/api/events'));
  } catch (err) {
    $('events-error').textContent = `Loading events failed: ${err.message}`;
  }
}

function renderEvents(events) {
  const list = $('event-list');
  list.replaceChildren(
    ...events.map((event) => {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.className = 'event-card card';
      a.href = `#/events/${encodeURIComponent(event.id)}`;
      const name = document.createElement('span');
      name.className = 'event-name';
      name.textContent = event.name;
      const status = document.createElement('span');
      status.className = 'pill';
      status.dataset.status = event.status;
      status.textContent = event.status;
      const live = event.cameras.filter((c) => c.status === 'live').length;
      const meta = document.createElement('span');
      meta.className = 'event-meta';
      meta.textContent = `${event.id} · ${event.cameras.length} camera${event.cameras.length === 1 ? '' : 's'}, ${live} live`;
      a.append(name, status, meta);
      li.append(a);
      return li;
    }),
  );
  if (!events.length) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'No events yet: create one above.';
    list.append(li);
  }
}

$('new-event').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const { name, id } = fields(form);
  const body = id ? { name, id } : { name };
  try {
    const event = await api('/api/events', { method: 'POST', body });
    form.reset();
    location.hash = `#/events/${encodeURIComponent(event.id)}`;
  } catch (err) {
    $('events-error').textContent = `Creating the event failed: ${err.message}`;
  }
});

// ---- one event -------------------------------------------------------------------------------

function openEvent(id) {
  show('view-event');
  $('crumb-event').textContent = id;
  current = new EventView(id, { onHeader: header });
  current.start();
}

function header({ name, status, link }) {
  $('crumb-event').textContent = name;
  document.title = `${name} · tally`;
  const pill = $('event-status');
  pill.textContent = status ?? '';
  pill.dataset.status = status ?? '';
  const state = $('link-state');
  state.dataset.up = String(link.up);
  state.textContent = link.up ? 'Connected' : link.retryIn != null ? `Reconnecting in ${fmt.seconds(link.retryIn / 1000)}` : 'Connecting…';
  $('banner').hidden = link.up || link.retryIn == null;
  $('view-event').dataset.link = link.up || link.retryIn == null ? 'up' : 'down';
  $('banner').textContent = 'Connection to tally lost: what you see may be out of date. Reconnecting…';
}

$('open-setup').addEventListener('click', () => {
  $('camera-error').textContent = '';
  $('setup').showModal();
});

$('new-camera').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const { name, id } = fields(form);
  try {
    const camera = await current.addCamera(name, id);
    form.reset();
    $('camera-error').textContent = '';
    toast(`${camera.name} added: copy its server and key into OBS`);
  } catch (err) {
    $('camera-error').textContent = `Adding the camera failed: ${err.message}`;
  }
});

$('sound').addEventListener('click', () => {
  const video = $('program');
  video.muted = !video.muted;
  if (!video.muted) video.play().catch(() => {});
  $('sound').textContent = video.muted ? 'Sound off' : 'Sound on';
  $('sound').classList.toggle('on', !video.muted);
});

window.addEventListener('hashchange', route);
$('hls-version').textContent = window.Hls?.version ?? '';
route();
