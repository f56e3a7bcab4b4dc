// A live stream of the events of a filter, as an EventSource opened with
// a single-use ticket. It keeps the highest sequence number it received;
// after an error, a `lagged` or a `shutdown` message (a server restart) it
// takes a new ticket and resumes after that number: no gap, no duplicate.
// Used by the live tail and the run timeline.
import { api, ticket } from './api.js';

export class Stream {
  constructor(filter, handlers) {
    this.filter = filter;
    this.h = handlers;
    this.lastSeq = null;
    this.es = null;
    this.stopped = false;
    this.backoff = 250;
    this.timer = null;
  }
  // `after`: the last sequence number already shown (null: from now).
  start(after = null) {
    if (after !== null) this.lastSeq = after;
    this.connect();
  }
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
  }
  retry(delay) {
    if (this.stopped) return;
    this.h.state('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay ?? this.backoff);
    this.backoff = Math.min(this.backoff * 2, 4000);
  }
  async connect() {
    if (this.stopped) return;
    let t;
    try {
      t = await ticket();
    } catch (err) {
      if (err.status === 401 || err.status === 403) return this.h.refused(err);
      return this.retry();
    }
    if (this.stopped) return;
    const q = new URLSearchParams(this.filter);
    q.set('ticket', t);
    if (this.lastSeq !== null) q.set('since', String(this.lastSeq));
    const es = new EventSource(`/v2/events/stream?${q}`);
    this.es = es;
    let opened = false;
    es.onopen = () => {
      opened = true;
      this.backoff = 250;
      this.h.state('live');
    };
    es.onmessage = (m) => {
      const seq = Number(m.lastEventId);
      if (this.lastSeq !== null && seq <= this.lastSeq) return;
      this.lastSeq = seq;
      this.h.event({ seq, event: JSON.parse(m.data) });
    };
    const again = (delay) => () => {
      es.close();
      this.retry(delay);
    };
    es.addEventListener('lagged', again(0));
    es.addEventListener('shutdown', again(250));
    es.onerror = () => {
      es.close();
      if (this.stopped) return;
      // Refused before it opened: ask the query API why (a 400 or 403
      // names the parameter or the project), else the server is away.
      if (!opened) {
        api('GET', `/v2/events?limit=1&${this.filter}`).then(
          () => this.retry(),
          (err) => (err.status === 400 || err.status === 403 ? this.h.refused(err) : this.retry()),
        );
      } else {
        this.retry();
      }
    };
  }
}
