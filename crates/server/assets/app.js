// tasklog dashboard: a single-page app over the JSON API (docs/api.md). No framework, no build.
//
// SECURITY: every string that comes from the API is inserted as text (text nodes, textContent,
// attribute values through setAttribute with ids we encode ourselves); nothing is ever parsed
// as HTML. The bearer token lives in sessionStorage and travels in the Authorization header of
// each API call; the page sets no cookie, so another site cannot act through this browser.
'use strict';

(function () {
  // ----- errors the page hit (read by the browser tests, shown in the footer) -----------------

  const appErrors = [];
  function recordError(text) {
    appErrors.push(String(text));
    const list = document.getElementById('app-errors');
    if (list) {
      list.append(el('li', {}, String(text)));
      list.hidden = false;
    }
  }
  window.addEventListener('error', (e) => {
    const target = e.target;
    if (target && target !== window && target.tagName) {
      recordError('failed to load ' + target.tagName.toLowerCase() + ' ' + (target.src || target.href || ''));
    } else {
      recordError('error: ' + (e.message || 'unknown') + ' at ' + (e.filename || '?') + ':' + (e.lineno || 0));
    }
  }, true);
  window.addEventListener('unhandledrejection', (e) => {
    const r = e.reason;
    recordError('unhandled rejection: ' + (r && r.stack ? r.stack : String(r)));
  });
  document.addEventListener('securitypolicyviolation', (e) => {
    recordError('CSP violation: ' + e.violatedDirective + ' ' + (e.blockedURI || ''));
  });
  const consoleError = console.error.bind(console);
  console.error = function (...args) {
    recordError(args.map(String).join(' '));
    consoleError(...args);
  };
  window.tasklogDashboard = {
    errors: appErrors,
    /** The errors recorded so far, forgotten (for the browser tests). */
    takeErrors() {
      const list = document.getElementById('app-errors');
      if (list) {
        while (list.firstChild) list.removeChild(list.firstChild);
        list.hidden = true;
      }
      return appErrors.splice(0);
    },
  };

  // ----- DOM helpers -------------------------------------------------------------------------

  /** Creates an element. Children: strings become text nodes; null/false are skipped. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
      else if (k === 'value') e.value = v;
      else if (v === true) e.setAttribute(k, '');
      else e.setAttribute(k, String(v));
    }
    appendAll(e, children);
    return e;
  }
  function appendAll(parent, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) appendAll(parent, c);
      else if (c instanceof Node) parent.append(c);
      else parent.append(document.createTextNode(String(c)));
    }
  }
  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    appendAll(e, children);
    return e;
  }
  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }
  function taskHref(id) {
    return '#/tasks/' + encodeURIComponent(id);
  }
  const STATES = ['pending', 'running', 'completed', 'failed', 'cancelled', 'discarded'];
  function stateBadge(state) {
    const known = STATES.includes(state) ? state : 'unknown';
    return el('span', { class: 'badge state-' + known }, state == null ? 'removed' : String(state));
  }
  function fmtNum(n) {
    return typeof n === 'number' ? n.toLocaleString('en') : '—';
  }
  function fmtBytes(n) {
    if (typeof n !== 'number') return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i];
  }
  function fmtMicros(us) {
    if (typeof us !== 'number') return '—';
    return us >= 1000 ? (us / 1000).toFixed(1) + ' ms' : us + ' µs';
  }
  function fmtSecs(s) {
    if (typeof s !== 'number') return 'none';
    if (s < 90) return Math.round(s) + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    if (s < 172800) return (s / 3600).toFixed(1) + ' h';
    return (s / 86400).toFixed(1) + ' days';
  }
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
  }
  function timeEl(iso) {
    if (!iso) return el('span', { class: 'muted' }, '—');
    return el('time', { datetime: String(iso), title: String(iso) }, fmtTime(iso));
  }
  function jsonBlock(value) {
    return el('pre', { class: 'json' }, JSON.stringify(value, null, 2));
  }
  function dl(rows) {
    const d = el('dl', { class: 'fields' });
    for (const [k, v] of rows) {
      d.append(el('div', {}, el('dt', {}, k), el('dd', {}, v === null || v === undefined || v === '' ? el('span', { class: 'muted' }, '—') : v)));
    }
    return d;
  }
  let toastTimer = null;
  function toast(text) {
    const t = document.getElementById('toast');
    t.textContent = text;
    t.classList.add('shown');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.remove('shown'), 4000);
  }
  function problemView(err) {
    const box = el('div', { class: 'problem', role: 'alert' },
      el('p', {}, el('strong', {}, err.status ? err.status + ' ' + (err.code || '') + ': ' : ''), err.message));
    if (err.at) box.append(el('p', {}, 'At: ', el('code', {}, err.at)));
    if (err.problems && err.problems.length) box.append(problemList(err.problems));
    return box;
  }
  function problemList(problems) {
    const ul = el('ul', { class: 'problems' });
    for (const p of problems) {
      const text = String(p);
      // `<json path>: <what>`: the path is shown as code.
      const m = /^([^\s:]+): (.*)$/.exec(text);
      ul.append(m ? el('li', {}, el('code', {}, m[1]), ' ', m[2]) : el('li', {}, text));
    }
    return ul;
  }

  // ----- the API ------------------------------------------------------------------------------

  const TOKEN_KEY = 'tasklog.token';
  let token = sessionStorage.getItem(TOKEN_KEY);
  const tokenListeners = new Set();

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || 'HTTP ' + status);
      this.status = status;
      this.code = problem && problem.code;
      this.at = problem && problem.at;
      this.problems = (problem && problem.problems) || [];
    }
  }

  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  // Read-your-writes across servers: the highest LSN this page has seen (from any answer's
  // Tasklog-Lsn and from the event stream) is sent with every read as Tasklog-Min-Lsn, so a
  // standby's replica answers only once it has what the page already saw (docs/api.md).
  let seenLsn = 0;
  function sawLsn(value) {
    const n = Number(value);
    if (Number.isSafeInteger(n) && n > seenLsn) seenLsn = n;
  }

  /** Calls the API; throws ApiError with the problem's detail on a non-2xx answer. */
  async function api(method, path, opts) {
    const o = opts || {};
    for (let attempt = 0; ; attempt += 1) {
      const headers = authHeaders({ Accept: o.accept || 'application/json' });
      if (method === 'GET' && seenLsn > 0) headers['Tasklog-Min-Lsn'] = String(seenLsn);
      if (o.ifMatch !== undefined && o.ifMatch !== null) headers['If-Match'] = '"' + o.ifMatch + '"';
      if (method !== 'GET') headers['X-Tasklog-Actor'] = 'dashboard';
      let body;
      if (o.json !== undefined) {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(o.json);
      } else if (o.body !== undefined) {
        headers['Content-Type'] = o.contentType || 'application/json';
        body = o.body;
      }
      let resp;
      try {
        resp = await fetch(path, { method, headers, body, credentials: 'omit', cache: 'no-store', signal: o.signal });
      } catch (e) {
        if (e && e.name === 'AbortError') throw e;
        throw new ApiError(0, { detail: 'the server did not answer (' + e.message + ')', code: 'network' });
      }
      sawLsn(resp.headers.get('Tasklog-Lsn'));
      if (resp.status === 401 && attempt < 5) {
        await askToken(token ? 'The server refused this token.' : 'This server needs a token.');
        continue;
      }
      if (!resp.ok) {
        let problem = null;
        try {
          problem = await resp.json();
        } catch (_) {
          problem = { detail: 'HTTP ' + resp.status + ' ' + resp.statusText };
        }
        throw new ApiError(resp.status, problem);
      }
      if (o.raw) return resp;
      if (resp.status === 204) return null;
      return resp.json();
    }
  }

  let tokenPrompt = null;
  function askToken(message) {
    if (tokenPrompt) return tokenPrompt.promise;
    const dialog = document.getElementById('token-dialog');
    const p = {};
    p.promise = new Promise((resolve, reject) => {
      p.resolve = resolve;
      p.reject = reject;
    });
    tokenPrompt = p;
    document.getElementById('token-error').textContent = message || '';
    document.getElementById('token-input').value = '';
    if (!dialog.open) dialog.showModal();
    return p.promise;
  }
  function setupTokenDialog() {
    const dialog = document.getElementById('token-dialog');
    document.getElementById('token-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const value = document.getElementById('token-input').value.trim();
      if (!value) return;
      token = value;
      sessionStorage.setItem(TOKEN_KEY, value);
      dialog.close('ok');
      const p = tokenPrompt;
      tokenPrompt = null;
      if (p) p.resolve();
      for (const f of tokenListeners) f();
    });
    document.getElementById('token-forget').addEventListener('click', () => {
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      document.getElementById('token-error').textContent = 'Token forgotten.';
    });
    dialog.addEventListener('close', () => {
      if (tokenPrompt) {
        const p = tokenPrompt;
        tokenPrompt = null;
        p.reject(new ApiError(401, { detail: 'a bearer token is needed', code: 'unauthorized' }));
      }
    });
    document.getElementById('token-button').addEventListener('click', () => {
      askToken('').catch(() => {});
    });
  }

  // ----- Server-Sent Events over fetch (EventSource cannot send the Authorization header) ---

  /** Reads an SSE body, calling onEvent({id, event, data}) per event. Resolves at its end. */
  async function readSse(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let data = [];
    let id = null;
    let event = 'message';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (!m) break;
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === '') {
          if (data.length) onEvent({ id, event, data: data.join('\n') });
          data = [];
          event = 'message';
          continue;
        }
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (field === 'data') data.push(v);
        else if (field === 'id') id = v;
        else if (field === 'event') event = v;
      }
    }
  }

  /** Reads committed events [from, last committed] once (`follow=false`), bounded in time. */
  async function catchUp(from, onEvent, timeoutMs) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), timeoutMs || 10000);
    try {
      const resp = await api('GET', '/v1/events?from=' + from + '&follow=false', {
        accept: 'text/event-stream', raw: true, signal: ctl.signal,
      });
      await readSse(resp.body, (ev) => {
        if (ev.event === 'problem') return;
        try {
          onEvent(JSON.parse(ev.data));
        } catch (_) { /* not an event */ }
      });
    } catch (e) {
      if (!(e && e.name === 'AbortError')) throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The page's one live stream of committed events, shared by every view. */
  const stream = {
    listeners: new Set(),
    lastId: null,
    retryMs: 1000,
    waitingToken: false,
    status: 'offline',
    setStatus(s) {
      this.status = s;
      const n = document.getElementById('stream-status');
      n.textContent = s;
      n.className = 'stream-status ' + s.replace(/[^a-z]/g, '');
    },
    async connect() {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
      this.setStatus('connecting');
      try {
        const resp = await fetch('/v1/events', { headers, credentials: 'omit', cache: 'no-store' });
        if (resp.status === 401) {
          // Reconnects once a token is given (the listener installed in start()).
          this.setStatus('needs token');
          this.waitingToken = true;
          return;
        }
        // 400: the log no longer holds the event to resume after (compacted): go on from now.
        if (resp.status === 400) this.lastId = null;
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
        this.setStatus('live');
        this.retryMs = 1000;
        await readSse(resp.body, (ev) => {
          if (ev.id !== null) {
            this.lastId = ev.id;
            sawLsn(ev.id);
          }
          if (ev.event === 'problem') {
            this.lastId = null;
            return;
          }
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch (_) {
            return;
          }
          for (const f of this.listeners) {
            try {
              f(data);
            } catch (e) {
              recordError('event listener: ' + (e && e.stack ? e.stack : e));
            }
          }
        });
      } catch (_) {
        // The server went away or the stream broke: reconnect below, resuming after lastId.
      }
      this.setStatus('reconnecting');
      setTimeout(() => this.connect(), this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 30000);
    },
  };

  // ----- confirmation -----------------------------------------------------------------------

  /** Asks to confirm; resolves {reason} or null when the operator backs out. */
  function confirmAction(title, text, withReason, okLabel) {
    const dialog = document.getElementById('confirm-dialog');
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-text').textContent = text;
    document.getElementById('confirm-error').textContent = '';
    document.getElementById('confirm-reason-label').hidden = !withReason;
    document.getElementById('confirm-reason').value = '';
    document.getElementById('confirm-ok').textContent = okLabel;
    return new Promise((resolve) => {
      const form = document.getElementById('confirm-form');
      const back = document.getElementById('confirm-cancel');
      let answer = null;
      const onSubmit = (e) => {
        e.preventDefault();
        answer = { reason: document.getElementById('confirm-reason').value.trim() };
        dialog.close('ok');
      };
      const onBack = () => dialog.close('back');
      const onClose = () => {
        form.removeEventListener('submit', onSubmit);
        back.removeEventListener('click', onBack);
        dialog.removeEventListener('close', onClose);
        resolve(answer);
      };
      form.addEventListener('submit', onSubmit);
      back.addEventListener('click', onBack);
      dialog.addEventListener('close', onClose);
      dialog.showModal();
      (withReason ? document.getElementById('confirm-reason') : back).focus();
    });
  }

  // ----- router -----------------------------------------------------------------------------

  let page = null; // {ctl: AbortController, onEvent, timers: []}

  function route() {
    if (page) {
      page.ctl.abort();
      for (const t of page.timers) clearInterval(t);
      stream.listeners.delete(page.listener);
    }
    const ctx = { ctl: new AbortController(), timers: [], onEvent: null };
    ctx.listener = (ev) => {
      if (ctx.onEvent) ctx.onEvent(ev);
    };
    stream.listeners.add(ctx.listener);
    page = ctx;
    const hash = location.hash || '#/';
    const q = hash.indexOf('?');
    const path = q < 0 ? hash.slice(1) : hash.slice(1, q);
    const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
    const main = document.getElementById('main');
    clear(main);
    let name;
    let run;
    if (path === '/' || path === '' || path === '/overview') {
      name = 'overview';
      run = () => overviewPage(main, ctx);
    } else if (path === '/tasks') {
      name = 'tasks';
      run = () => tasksPage(main, ctx, params);
    } else if (path.startsWith('/tasks/')) {
      name = 'tasks';
      let id;
      try {
        id = decodeURIComponent(path.slice('/tasks/'.length));
      } catch (_) {
        id = path.slice('/tasks/'.length);
      }
      run = () => taskPage(main, ctx, id);
    } else if (path === '/live') {
      name = 'live';
      run = () => livePage(main, ctx);
    } else if (path === '/transfer') {
      name = 'transfer';
      run = () => transferPage(main, ctx);
    } else {
      name = '';
      run = () => main.append(el('h1', { tabindex: '-1' }, 'Not found'), el('p', {}, el('a', { href: '#/' }, 'Back to the overview')));
    }
    for (const a of document.querySelectorAll('nav a[data-page]')) {
      if (a.dataset.page === name) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.body.dataset.page = name;
    Promise.resolve()
      .then(run)
      .catch((e) => {
        if (e && e.name === 'AbortError') return;
        if (e instanceof ApiError) main.append(problemView(e));
        else recordError('page: ' + (e && e.stack ? e.stack : e));
      });
  }

  function focusHeading(main) {
    const h = main.querySelector('h1');
    if (h && document.activeElement && document.activeElement.closest('nav, .pager, .crumbs')) h.focus();
  }

  // ----- Overview -----------------------------------------------------------------------------

  async function overviewPage(main, ctx) {
    const h1 = el('h1', { tabindex: '-1' }, 'Overview');
    const counts = el('section', { class: 'card wide', 'aria-labelledby': 'ov-counts' }, el('h2', { id: 'ov-counts' }, 'Tasks by state'));
    const chartSec = el('section', { class: 'card wide', 'aria-labelledby': 'ov-chart' }, el('h2', { id: 'ov-chart' }, 'Events per minute, last hour'));
    const runtime = el('section', { class: 'card', 'aria-labelledby': 'ov-runtime' }, el('h2', { id: 'ov-runtime' }, 'Runtime health'));
    const store = el('section', { class: 'card', 'aria-labelledby': 'ov-store' }, el('h2', { id: 'ov-store' }, 'Store health'));
    const recovery = el('section', { class: 'card', 'aria-labelledby': 'ov-recovery' }, el('h2', { id: 'ov-recovery' }, 'Readiness and recovery'));
    const recoveryBody = el('div', { id: 'overview-recovery' }, el('p', { class: 'muted' }, 'Loading…'));
    recovery.append(recoveryBody);
    const countsBody = el('div', { id: 'overview-counts' });
    const chartBody = el('div', { class: 'chart', id: 'overview-chart' }, el('p', { class: 'muted' }, 'Loading…'));
    const runtimeBody = el('div', { id: 'overview-runtime' });
    const storeBody = el('div', { id: 'overview-store' });
    counts.append(countsBody);
    chartSec.append(chartBody);
    runtime.append(runtimeBody);
    store.append(storeBody);
    main.append(h1, el('div', { class: 'grid' }, counts, chartSec, runtime, store, recovery));
    focusHeading(main);

    const buckets = new Map(); // minute (ms since epoch / 60000) -> events
    let chartNote = '';
    const seen = new Set();
    function countEvent(ev) {
      if (seen.has(ev.lsn)) return;
      seen.add(ev.lsn);
      const t = Date.parse(ev.at);
      if (Number.isNaN(t)) return;
      const m = Math.floor(t / 60000);
      buckets.set(m, (buckets.get(m) || 0) + 1);
    }

    let stats = await api('GET', '/v1/stats', { signal: ctx.ctl.signal });
    renderStats(stats);
    let pending = false;
    let last = 0;
    // `/v1/stats` walks every task for the runtime figures: on a big store it is asked for
    // less often (at least 1.5 s apart, and ten times as long as it took).
    let gap = 1500;
    async function refresh() {
      if (pending) return;
      pending = true;
      const wait = Math.max(0, gap - (Date.now() - last));
      await new Promise((r) => setTimeout(r, wait));
      try {
        const t0 = performance.now();
        stats = await api('GET', '/v1/stats', { signal: ctx.ctl.signal });
        gap = Math.max(1500, 10 * (performance.now() - t0));
        last = Date.now();
        renderStats(stats);
      } catch (e) {
        if (!(e && e.name === 'AbortError')) toast('Could not refresh: ' + e.message);
      } finally {
        pending = false;
      }
    }
    const CHART_EVENTS_MAX = 5000;
    ctx.onEvent = (ev) => {
      countEvent(ev);
      drawChart();
      refresh();
    };
    ctx.timers.push(setInterval(() => {
      drawChart();
      refresh();
    }, 15000));
    // Readiness and what opening the store found: `/health/detailed`, once a minute.
    async function loadRecovery() {
      try {
        renderRecovery(await api('GET', '/health/detailed', { signal: ctx.ctl.signal }));
      } catch (e) {
        if (e && e.name === 'AbortError') return;
        clear(recoveryBody);
        recoveryBody.append(el('p', { class: 'muted' }, 'Unavailable: ' + e.message));
      }
    }
    loadRecovery();
    ctx.timers.push(setInterval(loadRecovery, 60000));
    const h = stats.health || {};
    const lastLsn = h.last_lsn || 0;
    if (lastLsn > 0) {
      const from = Math.max(h.first_lsn || 1, lastLsn - CHART_EVENTS_MAX + 1, 1);
      if (from > 1 && lastLsn - from + 1 >= CHART_EVENTS_MAX) chartNote = 'Counted from the last ' + fmtNum(CHART_EVENTS_MAX) + ' events.';
      try {
        await catchUp(from, countEvent, 15000);
      } catch (e) {
        if (e && e.name === 'AbortError') return;
        chartNote = 'Past events unavailable (' + e.message + '); counting live ones.';
      }
    }
    drawChart();

    function drawChart() {
      clear(chartBody);
      const nowMin = Math.floor(Date.now() / 60000);
      const values = [];
      for (let i = 59; i >= 0; i -= 1) values.push(buckets.get(nowMin - i) || 0);
      const total = values.reduce((a, b) => a + b, 0);
      const max = Math.max(1, ...values);
      const W = 1000;
      const H = 220;
      const padL = 44;
      const padB = 26;
      const bw = (W - padL) / 60;
      const chart = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': 'chart-title', class: 'bars' });
      chart.append(svg('title', { id: 'chart-title' }, total + ' events in the last hour, at most ' + max + ' in one minute'));
      chart.append(svg('line', { x1: padL, y1: H - padB, x2: W, y2: H - padB, class: 'axis' }));
      chart.append(svg('text', { x: padL - 6, y: 18, class: 'label end' }, String(max)));
      chart.append(svg('text', { x: padL - 6, y: H - padB, class: 'label end' }, '0'));
      chart.append(svg('text', { x: padL, y: H - 4, class: 'label' }, '−60 min'));
      chart.append(svg('text', { x: padL + (W - padL) / 2, y: H - 4, class: 'label mid' }, '−30 min'));
      chart.append(svg('text', { x: W, y: H - 4, class: 'label end' }, 'now'));
      values.forEach((v, i) => {
        const bh = ((H - padB - 8) * v) / max;
        const rect = svg('rect', { x: (padL + i * bw + 1).toFixed(1), y: (H - padB - bh).toFixed(1), width: Math.max(1, bw - 2).toFixed(1), height: bh.toFixed(1), class: 'bar' });
        rect.append(svg('title', {}, (59 - i) + ' min ago: ' + v + ' events'));
        chart.append(rect);
      });
      chartBody.append(chart, el('p', { class: 'muted small', id: 'chart-summary' }, fmtNum(total) + ' events in the last hour. ' + chartNote));
    }

    function renderRecovery(d) {
      clear(recoveryBody);
      const r = d.recovery || {};
      const o = d.recovery_at_open || {};
      const interrupted = Array.isArray(o.tasks_interrupted) ? o.tasks_interrupted.length : 0;
      recoveryBody.append(dl([
        ['Ready', d.ready ? 'yes' : 'no' + (d.reason ? ': ' + d.reason : '')],
        ['Status', d.status],
        ['Orphaned / stuck running', fmtNum(r.orphaned_task_count) + ' / ' + fmtNum(r.stuck_task_count)],
        ['Waiting to run again', fmtNum(r.recovery_queue_depth)],
        ['Failed in the last hour', fmtNum(r.recent_failure_count)],
      ]), el('h3', {}, 'When the store was opened'), dl([
        ['Snapshot used', o.snapshot_used ? 'LSN ' + fmtNum(o.snapshot_lsn) : 'none'],
        ['Snapshots skipped (damaged)', fmtNum(Array.isArray(o.snapshots_skipped) ? o.snapshots_skipped.length : 0)],
        ['Events replayed', fmtNum(o.events_replayed)],
        ['Torn tail cut', fmtBytes(o.torn_bytes_cut)],
        ['Interrupted tasks', fmtNum(interrupted) + (interrupted ? ' (' + (o.interrupted_policy || '') + ')' : '')],
        ['Open took', typeof o.duration_ms === 'number' ? o.duration_ms.toFixed(0) + ' ms' : '—'],
      ]));
    }

    function renderStats(s) {
      clear(countsBody);
      const byState = s.by_state || {};
      const cards = el('ul', { class: 'state-counts' });
      for (const st of STATES) {
        cards.append(el('li', {}, el('a', { href: '#/tasks?states=' + st, class: 'count state-' + st, 'data-state': st },
          el('span', { class: 'n' }, fmtNum(byState[st] || 0)), el('span', { class: 'what' }, st))));
      }
      countsBody.append(cards, dl([
        ['Live tasks', fmtNum(s.total)],
        ['Removed (history kept)', fmtNum(s.removed)],
        ['Events recorded', fmtNum(s.events)],
        ['Attempts', fmtNum(s.attempts)],
        ['Failures recorded', fmtNum(s.failures)],
      ]));

      clear(runtimeBody);
      const r = s.runtime;
      if (!r) {
        runtimeBody.append(el('p', { class: 'muted' }, 'This server reports no runtime figures.'));
      } else {
        const recovered = Object.entries(r.recovered || {}).map(([k, v]) => k + ': ' + fmtNum(v)).join(', ');
        runtimeBody.append(dl([
          ['Running', fmtNum(r.running)],
          ['Stuck (lease expired)', fmtNum(r.stuck)],
          ['Retries', fmtNum(r.retries)],
          ['Success rate', typeof r.success_rate === 'number' ? (r.success_rate * 100).toFixed(1) + ' %' : '—'],
          ['Succeeded / failed / cancelled', fmtNum(r.succeeded) + ' / ' + fmtNum(r.failed) + ' / ' + fmtNum(r.cancelled)],
          ['Recovered after a worker died', recovered || 'none'],
          ['Run time p50 / p90 / p99', (r.succeeded || 0) + (r.failed || 0) === 0 ? 'no finished runs'
            : [r.run_ms_p50, r.run_ms_p90, r.run_ms_p99].map((v) => (typeof v === 'number' ? v.toFixed(0) + ' ms' : '—')).join(' / ')],
        ]));
        const depth = r.queue_depth || {};
        const rows = [];
        for (const [kind, byPrio] of Object.entries(depth)) {
          for (const [prio, n] of Object.entries(byPrio)) rows.push([kind, prio, n]);
        }
        runtimeBody.append(el('h3', {}, 'Queue depth (pending, by kind and priority)'));
        if (!rows.length) {
          runtimeBody.append(el('p', { class: 'muted' }, 'No pending runtime tasks.'));
        } else {
          runtimeBody.append(el('table', { class: 'compact' },
            el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Kind'), el('th', { scope: 'col' }, 'Priority'), el('th', { scope: 'col', class: 'num' }, 'Pending'))),
            el('tbody', {}, rows.map(([k, p, n]) => el('tr', {}, el('td', {}, k), el('td', {}, p), el('td', { class: 'num' }, fmtNum(n)))))));
        }
      }

      clear(storeBody);
      const h = s.health || {};
      storeBody.append(dl([
        ['Log segments', fmtNum(h.log_segments)],
        ['Log bytes', fmtBytes(h.log_bytes)],
        ['LSNs in the log', fmtNum(h.first_lsn) + ' – ' + fmtNum(h.last_lsn)],
        ['Last LSN', fmtNum(h.last_lsn)],
        ['Durable LSN', fmtNum(h.durable_lsn)],
        ['Snapshots', fmtNum(h.snapshots)],
        ['Newest snapshot', h.snapshot_lsn ? 'LSN ' + fmtNum(h.snapshot_lsn) + ', ' + fmtSecs(h.snapshot_age_secs) + ' old' : 'none'],
        ['Events since snapshot', fmtNum(h.events_since_snapshot)],
        ['fsync p50 / p99 / max', fmtMicros(h.fsync_p50_us) + ' / ' + fmtMicros(h.fsync_p99_us) + ' / ' + fmtMicros(h.fsync_max_us)],
        ['Appends / fsyncs', fmtNum(h.appends) + ' / ' + fmtNum(h.fsyncs)],
      ]));
    }
  }

  // ----- Tasks --------------------------------------------------------------------------------

  const LIST_KEYS = ['states', 'roles', 'providers', 'models', 'q', 'created_since', 'created_until', 'updated_since', 'updated_until', 'sort', 'order', 'limit', 'cursor'];
  const PAGE_SIZES = ['25', '50', '100'];
  let cursorStack = []; // cursors of the pages before the current one
  let cursorKey = '';

  function filterQuery(params, withPaging) {
    const out = new URLSearchParams();
    for (const k of LIST_KEYS) {
      if (!withPaging && ['sort', 'order', 'limit', 'cursor'].includes(k)) continue;
      const v = params.get(k);
      if (v) out.set(k, v);
    }
    for (const t of params.getAll('tag')) if (t) out.append('tag', t);
    for (const m of params.getAll('meta')) if (m) out.append('meta', m);
    if (withPaging) {
      if (!out.get('sort')) out.set('sort', 'created');
      if (!out.get('order')) out.set('order', 'desc');
      if (!PAGE_SIZES.includes(out.get('limit') || '')) out.set('limit', '50');
    }
    return out;
  }
  function toLocalInput(iso) {
    const d = new Date(iso);
    if (!iso || Number.isNaN(d.getTime())) return '';
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  }
  function fromLocalInput(v) {
    if (!v) return '';
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? '' : d.toISOString();
  }
  function splitList(v) {
    return v.split(',').map((s) => s.trim()).filter(Boolean);
  }

  async function tasksPage(main, ctx, params) {
    const states = new Set(splitList(params.get('states') || ''));
    const field = (label, name, value, attrs) => el('label', { class: 'field' }, label,
      el('input', Object.assign({ name, type: 'text', value: value || '', autocomplete: 'off' }, attrs || {})));
    const dateField = (label, name) => el('label', { class: 'field' }, label,
      el('input', { name, type: 'datetime-local', value: toLocalInput(params.get(name)) }));
    const select = (label, name, options, value) => el('label', { class: 'field' }, label,
      el('select', { name }, options.map(([v, t]) => el('option', { value: v, selected: v === value }, t))));
    const form = el('form', { class: 'filters', id: 'task-filters', role: 'search', 'aria-label': 'Filter tasks' },
      el('fieldset', { class: 'states' }, el('legend', {}, 'States'),
        STATES.map((s) => el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'state', value: s, checked: states.has(s) }), ' ', s))),
      field('Text', 'q', params.get('q'), { type: 'search', placeholder: 'title, description…' }),
      field('Roles', 'roles', params.get('roles'), { placeholder: 'comma-separated' }),
      field('Providers', 'providers', params.get('providers'), { placeholder: 'comma-separated' }),
      field('Models', 'models', params.get('models'), { placeholder: 'comma-separated' }),
      field('Tags (all of)', 'tags', params.getAll('tag').join(', '), { placeholder: 'comma-separated' }),
      field('Metadata', 'meta', params.getAll('meta').join(', '), { placeholder: 'key=value, …' }),
      dateField('Created from', 'created_since'),
      dateField('Created until', 'created_until'),
      dateField('Updated from', 'updated_since'),
      dateField('Updated until', 'updated_until'),
      select('Sort by', 'sort', [['created', 'created'], ['updated', 'updated']], params.get('sort') || 'created'),
      select('Order', 'order', [['desc', 'newest first'], ['asc', 'oldest first']], params.get('order') || 'desc'),
      select('Per page', 'limit', PAGE_SIZES.map((n) => [n, n]), PAGE_SIZES.includes(params.get('limit')) ? params.get('limit') : '50'),
      el('div', { class: 'buttons' },
        el('button', { type: 'submit', id: 'apply-filters' }, 'Apply'),
        el('a', { href: '#/tasks', class: 'button secondary' }, 'Clear')));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const out = new URLSearchParams();
      const st = f.getAll('state');
      if (st.length) out.set('states', st.join(','));
      for (const k of ['q', 'roles', 'providers', 'models']) {
        const v = String(f.get(k) || '').trim();
        if (v) out.set(k, k === 'q' ? v : splitList(v).join(','));
      }
      for (const t of splitList(String(f.get('tags') || ''))) out.append('tag', t);
      for (const m of splitList(String(f.get('meta') || ''))) out.append('meta', m);
      for (const k of ['created_since', 'created_until', 'updated_since', 'updated_until']) {
        const v = fromLocalInput(String(f.get(k) || ''));
        if (v) out.set(k, v);
      }
      for (const k of ['sort', 'order', 'limit']) out.set(k, String(f.get(k)));
      cursorStack = [];
      location.hash = '#/tasks?' + out.toString();
    });

    const countEl = el('span', { class: 'muted', id: 'task-count' });
    const liveNote = el('p', { class: 'live-note', id: 'live-note', role: 'status', 'aria-live': 'polite' });
    const status = el('div', { id: 'list-status' });
    const tbody = el('tbody', { id: 'task-rows' });
    const table = el('table', { class: 'tasks', id: 'task-table' },
      el('caption', { class: 'visually-hidden' }, 'Tasks'),
      el('thead', {}, el('tr', {}, ['Title', 'State', 'Role', 'Provider', 'Priority', 'Progress', 'Attempt', 'Created', 'Updated']
        .map((c) => el('th', { scope: 'col' }, c)))),
      tbody);
    const pager = el('nav', { class: 'pager', 'aria-label': 'Pages of tasks' });
    main.append(el('h1', { tabindex: '-1' }, 'Tasks ', countEl),
      el('details', { class: 'filter-box', open: window.matchMedia('(min-width: 800px)').matches || params.toString() !== '' }, el('summary', {}, 'Filters'), form),
      liveNote, status, el('div', { class: 'table-wrap' }, table), pager);
    focusHeading(main);

    const query = filterQuery(params, true);
    const countQuery = filterQuery(params, false);
    const key = countQuery.toString() + '|' + query.get('sort') + query.get('order') + query.get('limit');
    if (key !== cursorKey) {
      cursorStack = [];
      cursorKey = key;
    }
    const cursor = params.get('cursor') || '';
    let rows = new Map(); // id -> tr
    let nextCursor = null;

    async function load() {
      const body = await api('GET', '/v1/tasks?' + query.toString(), { signal: ctx.ctl.signal });
      const tasks = (body && body.tasks) || [];
      nextCursor = body && body.next_cursor;
      const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.taskId : null;
      clear(tbody);
      rows = new Map();
      for (const t of tasks) {
        const tr = taskRow(t);
        rows.set(t.id, tr);
        tbody.append(tr);
      }
      clear(status);
      if (!tasks.length) status.append(el('p', { class: 'empty' }, cursor ? 'No more tasks.' : 'No task matches these filters.'));
      if (focusedId && rows.has(focusedId)) rows.get(focusedId).querySelector('a').focus();
      renderPager();
    }
    async function loadCount() {
      try {
        const c = await api('GET', '/v1/tasks/count?' + countQuery.toString(), { signal: ctx.ctl.signal });
        countEl.textContent = '(' + fmtNum(c.count) + ' matching)';
      } catch (e) {
        if (!(e && e.name === 'AbortError')) countEl.textContent = '';
      }
    }
    function renderPager() {
      clear(pager);
      const withCursor = (c) => {
        const p = new URLSearchParams(query);
        if (c) p.set('cursor', c);
        else p.delete('cursor');
        return '#/tasks?' + p.toString();
      };
      if (cursor) pager.append(el('a', { href: withCursor(''), class: 'button secondary', id: 'first-page' }, 'First page'));
      if (cursor && cursorStack.length) {
        pager.append(el('button', { type: 'button', class: 'secondary', id: 'prev-page', onclick: () => {
          const prev = cursorStack.pop();
          location.hash = withCursor(prev);
        } }, 'Previous page'));
      }
      if (nextCursor) {
        pager.append(el('button', { type: 'button', id: 'next-page', onclick: () => {
          cursorStack.push(cursor);
          location.hash = withCursor(nextCursor);
        } }, 'Next page'));
      }
    }

    let reloadTimer = null;
    let changed = 0;
    ctx.onEvent = (ev) => {
      if (!cursor) {
        // First page: the page itself is re-read (one request of `limit` tasks), so new and
        // changed tasks appear in place; at most one reload per half second however busy
        // the store is.
        changed += 1;
        if (reloadTimer) return;
        reloadTimer = setTimeout(() => {
          reloadTimer = null;
          const n = changed;
          changed = 0;
          load().then(() => {
            liveNote.textContent = 'Updated live: ' + n + ' event' + (n === 1 ? '' : 's') + ' at ' + new Date().toLocaleTimeString('en-GB') + '.';
          }, () => {});
          loadCount();
        }, 500);
      } else if (rows.has(ev.task_id)) {
        // A later page stays put (its cursor keeps it correct); its rows are refreshed.
        refreshRow(ev.task_id);
      }
    };
    async function refreshRow(id) {
      const tr = rows.get(id);
      if (!tr) return;
      try {
        const t = await api('GET', '/v1/tasks/' + encodeURIComponent(id), { signal: ctx.ctl.signal });
        const fresh = taskRow(t);
        tr.replaceWith(fresh);
        rows.set(id, fresh);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) tr.classList.add('removed');
      }
    }
    await load();
    loadCount();
  }

  function taskRow(t) {
    const p = (t.progress && t.progress.percent) || 0;
    return el('tr', { 'data-task-id': t.id },
      el('td', { 'data-label': 'Title' }, el('a', { href: taskHref(t.id), 'data-task-id': t.id, class: 'task-link' }, t.title || '(untitled)'),
        el('div', { class: 'muted small mono' }, t.id),
        (t.state === 'failed' || t.state === 'discarded') && t.last_error ? el('div', { class: 'small error-line' }, t.last_error.length > 160 ? t.last_error.slice(0, 160) + '…' : t.last_error) : null),
      el('td', { 'data-label': 'State' }, stateBadge(t.state)),
      el('td', { 'data-label': 'Role' }, t.role || '—'),
      el('td', { 'data-label': 'Provider' }, t.provider || '—'),
      el('td', { 'data-label': 'Priority', class: 'num' }, String(t.priority)),
      el('td', { 'data-label': 'Progress' }, el('progress', { max: '100', value: String(p), 'aria-label': 'progress ' + p + '%' }), ' ', p + '%'),
      el('td', { 'data-label': 'Attempt', class: 'num' }, String(t.attempt)),
      el('td', { 'data-label': 'Created' }, timeEl(t.created_at)),
      el('td', { 'data-label': 'Updated' }, timeEl(t.updated_at)));
  }

  // ----- Task detail ------------------------------------------------------------------------

  const ACTIONS = {
    retry: { label: 'Retry', text: 'Retry this task? It goes back to pending for another attempt.', reason: false },
    cancel: { label: 'Cancel', text: 'Cancel this task? A running attempt loses its lease.', reason: true },
    requeue: { label: 'Requeue', text: 'Requeue this task? It goes back to pending; a running attempt loses its lease.', reason: true },
    remove: { label: 'Remove', text: 'Remove this task? Its history is kept and stays visible here.', reason: true },
  };

  async function taskPage(main, ctx, id) {
    const actionStatus = el('div', { id: 'action-status', role: 'status', 'aria-live': 'polite' });
    const body = el('div', { id: 'task-body' });
    main.append(el('p', { class: 'crumbs' }, el('a', { href: '#/tasks' }, '← Tasks')), actionStatus, body);
    let task = null;

    async function load(focus) {
      // The history first: a removed task's last event says so, and the task itself is then
      // not asked for (no 404 to log).
      let history = [];
      let historyError = null;
      try {
        const h = await api('GET', '/v1/tasks/' + encodeURIComponent(id) + '/history', { signal: ctx.ctl.signal });
        history = Array.isArray(h) ? h : (h && (h.events || h.history)) || [];
      } catch (e) {
        if (e && e.name === 'AbortError') throw e;
        historyError = e;
      }
      const lastEvent = history.length ? history[history.length - 1] : null;
      const removed = lastEvent !== null && lastEvent.to === null;
      let t = null;
      let missing = historyError;
      if (!removed && !(historyError && historyError.status === 404)) {
        try {
          t = await api('GET', '/v1/tasks/' + encodeURIComponent(id), { signal: ctx.ctl.signal });
        } catch (e) {
          if (e instanceof ApiError && e.status === 404) missing = e;
          else throw e;
        }
      }
      if (!t && missing === historyError) historyError = null;
      task = t;
      // A live reload keeps the keyboard focus where it was (on an action button, say).
      const focused = body.contains(document.activeElement) && document.activeElement.id;
      clear(body);
      if (!t) {
        body.append(el('h1', { tabindex: '-1' }, 'Task ', el('code', {}, id)));
        if (removed) {
          body.append(el('p', { class: 'notice', id: 'removed-notice' }, 'This task was removed; its history is kept.'));
        } else if (missing) {
          body.append(problemView(missing));
        }
      } else {
        renderTask(t);
      }
      body.append(historySection(history, historyError));
      if (focus) focusHeading(main);
      else if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    }

    function renderTask(t) {
      const p = (t.progress && t.progress.percent) || 0;
      const actions = el('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' },
        Object.entries(ACTIONS).map(([name, a]) => el('button', {
          type: 'button', id: 'action-' + name, class: name === 'remove' || name === 'cancel' ? 'danger' : '',
          onclick: () => act(name),
        }, a.label)));
      body.append(
        el('h1', { tabindex: '-1', id: 'task-title' }, t.title || '(untitled)'),
        el('p', { class: 'subtitle' }, stateBadge(t.state), ' ', el('code', { id: 'task-id' }, t.id), ' · version ', String(t.version)),
        actions,
        el('section', { class: 'card', 'aria-labelledby': 'sec-progress' }, el('h2', { id: 'sec-progress' }, 'Progress'),
          el('progress', { max: '100', value: String(p), id: 'task-progress', 'aria-label': 'progress' }),
          el('p', {}, p + '%', t.progress && t.progress.step ? ' · step ' : '', t.progress && t.progress.step ? el('strong', {}, t.progress.step) : null,
            t.progress && t.progress.message ? ' · ' + t.progress.message : '')),
        el('section', { class: 'card', 'aria-labelledby': 'sec-fields' }, el('h2', { id: 'sec-fields' }, 'Fields'), dl([
          ['Id', el('code', {}, t.id)],
          ['Title', t.title],
          ['Description', t.description ? el('p', { class: 'prewrap' }, t.description) : null],
          ['State', stateBadge(t.state)],
          ['Role', t.role],
          ['Provider', t.provider],
          ['Model', t.model],
          ['Tags', t.tags && t.tags.length ? el('ul', { class: 'tags' }, t.tags.map((g) => el('li', {}, g))) : null],
          ['Priority', String(t.priority)],
          ['Attempt', String(t.attempt)],
          ['Errors', String(t.error_count)],
          ['Created', timeEl(t.created_at)],
          ['Updated', timeEl(t.updated_at)],
          ['Started', timeEl(t.started_at)],
          ['Completed', timeEl(t.completed_at)],
          ['Version', String(t.version)],
          ['Last LSN', fmtNum(t.last_lsn)],
          ['Metadata', t.metadata && Object.keys(t.metadata).length ? jsonBlock(t.metadata) : null],
        ])),
        el('section', { class: 'card', 'aria-labelledby': 'sec-lease' }, el('h2', { id: 'sec-lease' }, 'Lease'),
          t.lease ? dl([['Owner', t.lease.owner], ['Expires', timeEl(t.lease.expires_at)], ['Claim LSN', fmtNum(t.lease.claim_lsn)]])
            : el('p', { class: 'muted' }, 'No worker holds this task.')),
        el('section', { class: 'card', 'aria-labelledby': 'sec-checkpoint' }, el('h2', { id: 'sec-checkpoint' }, 'Checkpoint'),
          t.checkpoint ? [dl([['Name', t.checkpoint.name], ['Progress', t.checkpoint.progress + '%'], ['Taken', timeEl(t.checkpoint.at)]]), el('h3', {}, 'Data'), jsonBlock(t.checkpoint.data)]
            : el('p', { class: 'muted' }, 'No checkpoint.')),
        el('section', { class: 'card', 'aria-labelledby': 'sec-result' }, el('h2', { id: 'sec-result' }, 'Result and error'),
          t.result !== null && t.result !== undefined ? [el('h3', {}, 'Result'), jsonBlock(t.result)] : el('p', { class: 'muted' }, 'No result.'),
          t.last_error ? [el('h3', {}, 'Last error'), el('pre', { class: 'error-text', id: 'task-error' }, t.last_error)] : null),
        outputsSection(t.outputs || []));
    }

    async function act(name) {
      const a = ACTIONS[name];
      if (!task) return;
      const answer = await confirmAction(a.label + ' task', a.text + ' (' + task.title + ')', a.reason, a.label);
      if (!answer) return;
      clear(actionStatus);
      const path = '/v1/tasks/' + encodeURIComponent(task.id);
      try {
        if (name === 'remove') {
          const q = answer.reason ? '?reason=' + encodeURIComponent(answer.reason) : '';
          await api('DELETE', path + q, { ifMatch: task.version });
        } else {
          const json = answer.reason ? { reason: answer.reason } : {};
          await api('POST', path + '/' + name, { json, ifMatch: task.version });
        }
        actionStatus.append(el('p', { class: 'ok' }, a.label + ' done.'));
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        const box = problemView(e);
        box.id = 'action-error';
        if (e.status === 412) box.append(el('p', {}, 'The task changed since this page showed it; it now shows the current task.'));
        actionStatus.append(box);
      }
      await load(false);
    }

    let reload = null;
    ctx.onEvent = (ev) => {
      // At most one reload per 300 ms, however often the task changes.
      if (ev.task_id !== id || reload) return;
      reload = setTimeout(() => {
        reload = null;
        load(false).catch(() => {});
      }, 300);
    };
    await load(true);
  }

  function outputsSection(outputs) {
    const sec = el('section', { class: 'card wide', 'aria-labelledby': 'sec-outputs' }, el('h2', { id: 'sec-outputs' }, 'Outputs (' + outputs.length + ')'));
    if (!outputs.length) {
      sec.append(el('p', { class: 'muted' }, 'No outputs.'));
      return sec;
    }
    const list = el('ol', { class: 'outputs' });
    for (const o of outputs) {
      const meta = [o.kind, fmtTime(o.at), o.path ? 'path ' + o.path : null, typeof o.size_bytes === 'number' ? fmtBytes(o.size_bytes) : null, o.mime]
        .filter(Boolean).join(' · ');
      list.append(el('li', {}, el('div', { class: 'muted small' }, meta), el('pre', { class: 'output' }, o.content)));
    }
    sec.append(list);
    return sec;
  }

  function historySection(history, error) {
    const sec = el('section', { class: 'card wide', 'aria-labelledby': 'sec-history' }, el('h2', { id: 'sec-history' }, 'History (' + history.length + ' events)'));
    if (error) sec.append(problemView(error));
    const ol = el('ol', { class: 'timeline', id: 'history' });
    for (const e of history) {
      const transition = e.from === e.to ? (e.to || '—') : (e.from || '∅') + ' → ' + (e.to || 'removed');
      const hasDetails = e.details && typeof e.details === 'object' && Object.keys(e.details).length;
      ol.append(el('li', { 'data-lsn': String(e.lsn) },
        el('div', { class: 'when' }, el('span', { class: 'lsn' }, 'LSN ' + e.lsn), ' ', timeEl(e.at)),
        el('div', { class: 'what' }, el('strong', {}, e.kind), ' ', el('span', { class: 'transition' }, transition),
          e.actor ? el('span', { class: 'actor' }, ' by ', e.actor) : null),
        hasDetails ? el('details', {}, el('summary', {}, 'Details'), jsonBlock(e.details)) : null));
    }
    sec.append(ol);
    return sec;
  }

  // ----- Live feed ----------------------------------------------------------------------------

  const FEED_MAX = 500;

  async function livePage(main, ctx) {
    let paused = false;
    const held = [];
    const pauseBtn = el('button', { type: 'button', id: 'feed-pause', 'aria-pressed': 'false' }, 'Pause');
    const clearBtn = el('button', { type: 'button', class: 'secondary', id: 'feed-clear' }, 'Clear');
    const note = el('p', { class: 'muted', role: 'status' });
    const feed = el('ol', { class: 'feed', id: 'feed', 'aria-live': 'off' });
    main.append(el('h1', { tabindex: '-1' }, 'Live feed'),
      el('p', {}, 'Committed events as they become durable, newest first (the last 50 before this page opened, then live).'),
      el('div', { class: 'buttons' }, pauseBtn, clearBtn), note, feed);
    focusHeading(main);
    const shown = new Set();
    let newest = 0;
    function item(ev) {
      return el('li', { 'data-lsn': String(ev.lsn) },
        el('span', { class: 'lsn' }, String(ev.lsn)),
        timeEl(ev.at),
        el('strong', { class: 'kind' }, ev.kind),
        el('a', { href: taskHref(ev.task_id), class: 'mono' }, ev.task_id),
        el('span', { class: 'transition' }, ev.from && ev.from === ev.to ? ev.to : (ev.from || '∅') + ' → ' + (ev.to || 'removed')),
        ev.actor ? el('span', { class: 'actor' }, 'by ' + ev.actor) : null);
    }
    function add(ev) {
      if (shown.has(ev.lsn)) return;
      shown.add(ev.lsn);
      const li = item(ev);
      if (ev.lsn > newest) {
        feed.prepend(li);
        newest = ev.lsn;
      } else {
        const after = [...feed.children].find((c) => Number(c.dataset.lsn) < ev.lsn);
        if (after) feed.insertBefore(li, after);
        else feed.append(li);
      }
      while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    }
    pauseBtn.addEventListener('click', () => {
      paused = !paused;
      pauseBtn.textContent = paused ? 'Resume' : 'Pause';
      pauseBtn.setAttribute('aria-pressed', String(paused));
      if (!paused) held.splice(0).forEach(add);
      note.textContent = paused ? 'Paused: new events are held.' : '';
    });
    clearBtn.addEventListener('click', () => clear(feed));
    ctx.onEvent = (ev) => {
      if (paused) {
        held.push(ev);
        note.textContent = 'Paused: ' + held.length + ' new events held.';
      } else add(ev);
    };
    const s = await api('GET', '/v1/stats', { signal: ctx.ctl.signal });
    const last = (s.health && s.health.last_lsn) || 0;
    if (last > 0) {
      const from = Math.max(1, (s.health && s.health.first_lsn) || 1, last - 49);
      await catchUp(from, add, 10000);
    }
    if (!feed.children.length) note.textContent = 'No events yet.';
  }

  // ----- Export and import ------------------------------------------------------------------

  async function transferPage(main, ctx) {
    const fmt = el('select', { id: 'export-format', name: 'format' }, el('option', { value: 'json' }, 'JSON (importable)'), el('option', { value: 'csv' }, 'CSV'));
    const exportBtn = el('button', { type: 'submit', id: 'export-button' }, 'Download export');
    const exportStatus = el('p', { role: 'status', id: 'export-status' });
    const exportForm = el('form', { class: 'stack', id: 'export-form' }, el('label', { class: 'field' }, 'Format', fmt), el('div', { class: 'buttons' }, exportBtn), exportStatus);
    exportForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      exportBtn.disabled = true;
      exportStatus.textContent = 'Exporting…';
      try {
        const format = fmt.value === 'csv' ? 'csv' : 'json';
        const resp = await api('GET', '/v1/export?format=' + format, { raw: true, accept: '*/*', signal: ctx.ctl.signal });
        const blob = await resp.blob();
        const url = URL.createObjectURL(blob);
        const a = el('a', { href: url, download: 'tasklog-export-' + new Date().toISOString().replace(/[:.]/g, '-') + '.' + format });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
        exportStatus.textContent = 'Exported ' + fmtBytes(blob.size) + '.';
      } catch (err) {
        if (err && err.name === 'AbortError') return;
        exportStatus.textContent = 'Export failed: ' + err.message;
      } finally {
        exportBtn.disabled = false;
      }
    });

    const file = el('input', { type: 'file', id: 'import-file', name: 'file', accept: 'application/json,.json', required: true });
    const mode = el('select', { id: 'import-mode', name: 'mode' }, el('option', { value: 'merge' }, 'merge'), el('option', { value: 'replace' }, 'replace (removes tasks not in the file)'));
    const onConflict = el('select', { id: 'import-conflict', name: 'on_conflict' }, ['skip', 'overwrite', 'fail'].map((v) => el('option', { value: v }, v)));
    const checkBtn = el('button', { type: 'submit', id: 'import-check' }, 'Check (dry run)');
    const applyBtn = el('button', { type: 'button', id: 'import-apply', class: 'danger', disabled: true }, 'Import');
    const result = el('div', { id: 'import-result', 'aria-live': 'polite' });
    const importForm = el('form', { class: 'stack', id: 'import-form' },
      el('label', { class: 'field' }, 'Export file (JSON)', file),
      el('label', { class: 'field' }, 'Mode', mode),
      el('label', { class: 'field' }, 'When an id exists', onConflict),
      el('div', { class: 'buttons' }, checkBtn, applyBtn), result);
    let checked = null; // the file and options the last passing dry run was for
    const options = () => 'mode=' + (mode.value === 'replace' ? 'replace' : 'merge') + '&on_conflict=' + encodeURIComponent(onConflict.value);
    const invalidate = () => {
      checked = null;
      applyBtn.disabled = true;
    };
    for (const i of [file, mode, onConflict]) i.addEventListener('change', invalidate);

    async function send(dry) {
      const f = file.files && file.files[0];
      if (!f) return null;
      clear(result);
      result.append(el('p', { class: 'muted' }, dry ? 'Checking…' : 'Importing…'));
      try {
        const report = await api('POST', '/v1/import?' + options() + (dry ? '&dry_run=true' : ''), { body: f, signal: ctx.ctl.signal });
        clear(result);
        result.append(el('h3', {}, dry ? 'Dry run: nothing was written' : 'Imported'), dl([
          ['Format read', report.format],
          ['New tasks', fmtNum(report.imported)],
          ['Skipped (id exists)', fmtNum(report.skipped)],
          ['Overwritten', fmtNum(report.overwritten)],
          ['Removed', fmtNum(report.removed)],
          ['History events', fmtNum(report.events_replayed)],
          ['Last LSN', fmtNum(report.last_lsn)],
        ]));
        return report;
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        clear(result);
        const box = problemView(err);
        box.id = 'import-problems';
        result.append(el('h3', {}, dry ? 'The check found problems: nothing can be imported' : 'The import failed: nothing was written'), box);
        return null;
      }
    }
    importForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      invalidate();
      const f = file.files && file.files[0];
      const report = await send(true);
      if (report && f) {
        checked = { f, opts: options() };
        applyBtn.disabled = false;
      }
    });
    applyBtn.addEventListener('click', async () => {
      const f = file.files && file.files[0];
      if (!checked || checked.f !== f || checked.opts !== options()) {
        invalidate();
        return;
      }
      const answer = await confirmAction('Import', 'Import ' + f.name + ' (' + options().replace('&', ', ') + ')?', false, 'Import');
      if (!answer) return;
      invalidate();
      await send(false);
    });

    main.append(el('h1', { tabindex: '-1' }, 'Export and import'),
      el('div', { class: 'grid' },
        el('section', { class: 'card', 'aria-labelledby': 'sec-export' }, el('h2', { id: 'sec-export' }, 'Export'),
          el('p', {}, 'Every task with its complete history, as one document.'), exportForm),
        el('section', { class: 'card', 'aria-labelledby': 'sec-import' }, el('h2', { id: 'sec-import' }, 'Import'),
          el('p', {}, 'Checked first with a dry run; the import itself is one atomic batch.'), importForm)));
    focusHeading(main);
  }

  // ----- start ------------------------------------------------------------------------------

  function start() {
    setupTokenDialog();
    window.addEventListener('hashchange', route);
    tokenListeners.add(() => route());
    tokenListeners.add(() => {
      if (stream.waitingToken) {
        stream.waitingToken = false;
        stream.connect();
      }
    });
    route();
    stream.connect();
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
