// Small DOM and formatting helpers shared by the views.

export const $ = (id) => document.getElementById(id);

/** A fresh copy of a <template>'s first element. */
export function fromTemplate(id) {
  return $(id).content.firstElementChild.cloneNode(true);
}

let toastTimer = null;

/** A short message at the bottom of the screen; `kind` is 'error' or 'info'. */
export function toast(message, kind = 'info') {
  const box = $('toast');
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), kind === 'error' ? 6000 : 3000);
}

/** Copies text to the clipboard; falls back to a selected input where the Clipboard API is
 * unavailable (plain http on a venue network is not a secure context). */
export async function copyText(text, input) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const type = input.type;
    input.type = 'text';
    input.select();
    const ok = document.execCommand('copy');
    input.type = type;
    input.setSelectionRange(0, 0);
    if (!ok) throw new Error('copy failed');
  }
}

export const fmt = {
  bitrate(bps) {
    if (bps == null) return '–';
    return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mb/s` : `${Math.round(bps / 1e3)} kb/s`;
  },
  fps: (f) => (f == null ? '– fps' : `${f.toFixed(f % 1 ? 1 : 0)} fps`),
  gop: (s) => (s == null ? 'GOP –' : `GOP ${s.toFixed(1)} s`),
  resolution: (w, h) => (w && h ? `${w}×${h}` : ''),
  seconds: (s) => (s == null ? '–' : `${s.toFixed(1)} s`),
  clock(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString([], { hour12: false });
  },
};
