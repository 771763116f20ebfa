// The program preview: hls.js on a muted <video>, tuned to stay close to the live edge, with
// latency, buffer and stall figures for the operator. Recovers from fatal errors on its own.

const HLS_CONFIG = {
  lowLatencyMode: false, // tally serves whole segments, no LL-HLS parts
  liveSyncDurationCount: 1.5, // start and stay 1.5 target durations behind the live edge
  liveMaxLatencyDurationCount: 5, // further behind than this: jump forward
  maxLiveSyncPlaybackRate: 1.1, // drifted behind: catch up by playing up to 10 % faster
  maxBufferLength: 10,
  backBufferLength: 10,
  enableWorker: true,
};

const RETRY_MS = 2000;

export class Player {
  /** `onStats({ latency, buffer, stalls, playing })` is called about twice a second. */
  constructor(video, { onStats, onNote }) {
    this.video = video;
    this.onStats = onStats;
    this.onNote = onNote;
    this.url = null;
    this.hls = null;
    this.retry = null;
    this.stalls = 0;
    this.started = false;
    video.addEventListener('playing', () => {
      this.started = true;
      this.onNote('');
    });
    video.addEventListener('waiting', () => {
      if (this.started) this.stalls += 1;
    });
    this.ticker = setInterval(() => this.report(), 500);
  }

  /** Plays `url` (a live playlist); calling again with the same URL keeps the current session. */
  play(url) {
    if (url === this.url && (this.hls || this.video.src)) return;
    this.stop();
    this.url = url;
    this.stalls = 0;
    this.onNote('Loading the program…');
    const Hls = window.Hls;
    if (Hls?.isSupported()) {
      this.startHls(Hls);
    } else if (this.video.canPlayType('application/vnd.apple.mpegurl')) {
      this.video.src = url; // Safari's own HLS
    } else {
      this.onNote('This browser cannot play HLS');
    }
  }

  startHls(Hls) {
    const hls = new Hls(HLS_CONFIG);
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal || hls !== this.hls) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !this.recovered) {
        this.recovered = true;
        hls.recoverMediaError();
        return;
      }
      // Usually the program has no segment yet, or tally restarted: start over shortly.
      this.onNote(`Program unavailable (${data.details}); retrying…`);
      this.destroyHls();
      this.retry = setTimeout(() => this.startHls(Hls), RETRY_MS);
    });
    hls.on(Hls.Events.FRAG_BUFFERED, () => {
      this.recovered = false;
    });
    hls.attachMedia(this.video);
    hls.loadSource(this.url);
    // Announced for tests and debugging tools that want to observe the player.
    window.dispatchEvent(new CustomEvent('tally:hls', { detail: { hls, Hls } }));
  }

  destroyHls() {
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
  }

  stop() {
    clearTimeout(this.retry);
    this.destroyHls();
    this.video.removeAttribute('src');
    this.video.load();
    this.url = null;
    this.started = false;
  }

  destroy() {
    this.stop();
    clearInterval(this.ticker);
  }

  report() {
    const video = this.video;
    const buffered = video.buffered;
    let buffer = null;
    if (buffered.length) buffer = Math.max(0, buffered.end(buffered.length - 1) - video.currentTime);
    let latency = this.hls?.latency;
    if (!Number.isFinite(latency) || latency <= 0) latency = null;
    this.onStats({ latency, buffer, stalls: this.stalls, playing: this.started && !video.paused });
  }
}
