// The authgress connections dashboard: renders /status, filters rows,
// counts token lifetimes down, and runs connection tests. Every value is
// put in the page as text (never as HTML): names and error messages come
// from the configuration and from remote servers.
'use strict';
(function () {
  var csrf = document.querySelector('meta[name="authgress-csrf"]').getAttribute('content');
  var params = new URLSearchParams(location.search);
  var refreshSeconds = Math.max(1, Number(params.get('refresh')) || 5);
  var tbody = document.querySelector('#connections tbody');
  var search = document.getElementById('search');
  var banner = document.getElementById('banner');
  var rows = new Map(); // connection name -> row state
  var doc = null;       // the last /status document
  var NCOLS = 11;

  // el builds an element; strings become text nodes.
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k === 'class') e.className = v;
        else e.setAttribute(k, v === true ? '' : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) add(e, arguments[i]);
    return e;
  }
  function add(e, c) {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { add(e, x); }); return; }
    e.append(c instanceof Node ? c : String(c));
  }
  function fill(e) {
    e.replaceChildren();
    for (var i = 1; i < arguments.length; i++) add(e, arguments[i]);
  }
  function list(a) { return Array.isArray(a) ? a : []; }
  function now() { return performance.now() / 1000; }
  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }
  function pad(n) { return n < 10 ? '0' + n : String(n); }

  function duration(s) {
    s = Math.floor(s);
    if (!(s > 0)) return 'expired';
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + pad(m) + 'm ' + pad(sec) + 's';
    if (m > 0) return m + 'm ' + pad(sec) + 's';
    return sec + 's';
  }
  function ago(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) return '';
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }
  function when(iso) {
    var t = Date.parse(iso);
    return isNaN(t) ? '' : new Date(t).toLocaleString();
  }

  // countdown is a time left that the page counts down every second.
  function countdown(seconds, cls) {
    var e = el('span', { class: 'countdown' + (cls ? ' ' + cls : ''), 'data-deadline': (now() + seconds).toFixed(3) });
    tickOne(e);
    return e;
  }
  function tickOne(e) {
    var left = Number(e.getAttribute('data-deadline')) - now();
    e.textContent = duration(left);
    e.classList.toggle('expired', left <= 0);
  }
  function tick() {
    document.querySelectorAll('.countdown').forEach(tickOne);
  }

  function chip(text, cls, title) {
    return el('span', { class: 'chip' + (cls ? ' ' + cls : ''), title: title }, text);
  }
  function muted(text) { return el('span', { class: 'muted' }, text); }

  function profileOf(name) {
    return list(doc && doc.profiles).find(function (p) { return p.name === name; }) || null;
  }
  function nodeDetail(cluster, name) {
    var cl = list(doc && doc.clusters).find(function (c) { return c.name === cluster; });
    return cl ? list(cl.nodes).find(function (n) { return n.name === name; }) || null : null;
  }

  function waysIn(c) {
    var out = [];
    list(c.ways).forEach(function (w) {
      if (w === 'reverse') out.push(el('div', null, chip('reverse', 'way', 'its own listener: send origin-form requests to ' + (c.listen || '?')), el('div', { class: 'addr' }, c.listen || '')));
      else if (w === 'forward') out.push(chip('forward', 'way', 'HTTP_PROXY: plain-http requests through the proxy, sent upstream over TLS'));
      else if (w === 'intercept') out.push(chip('intercept', 'way', 'HTTPS_PROXY: CONNECT, intercepted with the interception CA'));
      else out.push(chip(w, 'way'));
    });
    if (c.via) out.push(chip('via ' + c.via, 'via', 'sent through a node of ' + c.via));
    return out.length ? out : muted('none');
  }

  function certCell(c) {
    if (!c.profile) return muted('—');
    var p = profileOf(c.profile), cert = p && p.client_certificate;
    if (!cert) return [el('div', null, c.profile), muted('no client certificate')];
    var left = cert.expires_in_seconds;
    var cls = left <= 0 ? 'bad' : left < 14 * 86400 ? 'warn' : 'good';
    return [el('div', null, c.profile), el('div', { class: 'small', title: 'not after ' + when(cert.not_after) }, 'expires in ', countdown(left, cls))];
  }

  function nodesCell(c) {
    var nodes = list(c.nodes);
    if (!nodes.length) return muted('—');
    return nodes.map(function (n) {
      return el('span', { class: 'node ' + n.state, title: n.cluster + '/' + n.name + ': ' + n.state }, el('span', { class: 'dot', 'aria-hidden': 'true' }), n.cluster + '/' + n.name + ' ', el('span', { class: 'state' }, n.state));
    });
  }

  function tokenCell(c) {
    var t = c.token;
    if (!t) return muted('no credential');
    if (t.state === 'valid') return [chip('valid', 'good'), ' ', countdown(t.expires_in_seconds, 'token-left')];
    if (t.state === 'per_user') return [chip('per user', 'good'), el('div', { class: 'small' }, (t.users || 0) + ' logged in')];
    return [chip('none', t.last_error ? 'bad' : ''), t.last_result ? el('div', { class: 'small' }, t.last_result) : null];
  }

  function requestsCell(c) {
    return [el('span', { class: 'requests', title: 'requests since start' }, String(c.requests || 0)),
      el('span', { class: 'errors' + (c.errors ? ' bad' : ''), title: 'errors since start' }, ' · ' + (c.errors || 0) + ' err')];
  }

  function lastErrorCell(c) {
    var e = c.last_error;
    if (!e) return muted('—');
    return [el('div', { class: 'code' }, e.code), el('div', { class: 'small clip', title: e.message }, e.message), el('div', { class: 'small muted' }, ago(e.at))];
  }

  function haystack(c) {
    var parts = [c.name, c.credential, c.grant, c.vault, c.profile, c.url, c.listen, c.via, c.scopes];
    parts = parts.concat(list(c.hosts), list(c.paths), list(c.ways), list(c.clients));
    list(c.nodes).forEach(function (n) { parts.push(n.cluster + '/' + n.name, n.state); });
    return parts.filter(Boolean).join(' ').toLowerCase();
  }

  function label(td, text) { td.setAttribute('data-label', text); return td; }

  function makeRow(name) {
    // test: the last test report; testError: why the last test could not run.
    var r = { name: name, expanded: false, testing: false, test: null, testError: '', conn: null };
    r.row = el('tr', { class: 'conn', 'data-name': name });
    r.cells = [];
    var heads = ['Connection', 'Hosts', 'Ways in', 'Credential', 'Vault', 'Profile certificate', 'Nodes', 'Token', 'Requests', 'Last error', 'Test'];
    for (var i = 0; i < NCOLS; i++) { r.cells.push(label(el('td'), heads[i])); r.row.append(r.cells[i]); }
    r.detailsBtn = el('button', { type: 'button', class: 'link details-toggle', 'aria-expanded': 'false' }, name);
    r.detailsBtn.addEventListener('click', function () { r.expanded = !r.expanded; renderDetails(r); });
    r.testBtn = el('button', { type: 'button', class: 'test' }, 'Test connection');
    r.testBtn.addEventListener('click', function () { runTest(r); });
    r.testStatus = el('span', { class: 'test-status', 'aria-live': 'polite' });
    fill(r.cells[0], el('div', { class: 'cell' }, r.detailsBtn));
    fill(r.cells[10], el('div', { class: 'cell' }, r.testBtn, r.testStatus));
    r.detailsCell = el('td', { colspan: NCOLS });
    r.details = el('tr', { class: 'details', 'data-name': name, hidden: true }, r.detailsCell);
    return r;
  }

  function renderRow(r, c) {
    r.conn = c;
    r.haystack = haystack(c);
    var hosts = list(c.hosts).map(function (h) { return el('div', { class: 'host' }, h); });
    if (list(c.paths).length) hosts.push(el('div', { class: 'small muted' }, 'paths ' + c.paths.join(', ')));
    if (!list(c.hosts).length) hosts.push(muted('reverse listener only'));
    cell(1, hosts);
    cell(2, waysIn(c));
    cell(3, c.credential ? [el('div', null, c.credential), el('div', { class: 'small muted' }, c.grant || '')] : muted('none'));
    cell(4, c.vault || muted('—'));
    cell(5, certCell(c));
    cell(6, nodesCell(c));
    cell(7, tokenCell(c));
    cell(8, requestsCell(c));
    cell(9, lastErrorCell(c));
    // One wrapper per cell: on a narrow screen the cell is a grid of its
    // label and this.
    function cell(i, content) { fill(r.cells[i], el('div', { class: 'cell' }, content)); }
    r.row.classList.toggle('failing', !!(c.token && c.token.last_error && c.token.state !== 'valid'));
    renderTestStatus(r);
    if (r.expanded) renderDetails(r);
  }

  function dl(pairs) {
    var d = el('dl');
    pairs.forEach(function (p) {
      if (p[1] === undefined || p[1] === null || p[1] === '' || (Array.isArray(p[1]) && !p[1].length)) return;
      d.append(el('dt', null, p[0]), el('dd', null, p[1]));
    });
    return d;
  }

  function section(title, body) { return el('section', null, el('h3', null, title), body); }

  function renderDetails(r) {
    r.details.hidden = !r.expanded || r.row.hidden;
    r.detailsBtn.setAttribute('aria-expanded', String(r.expanded));
    if (!r.expanded) return;
    var c = r.conn, parts = [];
    parts.push(section('Connection', dl([
      ['url', c.url], ['hosts', list(c.hosts).join(', ')], ['paths', list(c.paths).join(', ')],
      ['reverse listener', c.listen], ['clients', list(c.clients).join(', ')], ['via', c.via],
      ['requests since start', String(c.requests || 0)], ['errors since start', String(c.errors || 0)]])));
    if (c.credential) {
      var t = c.token || {};
      parts.push(section('Credential and token', dl([
        ['credential', c.credential], ['grant', c.grant], ['vault', c.vault], ['scopes', c.scopes],
        ['token', t.state], ['time left', t.state === 'valid' ? countdown(t.expires_in_seconds, 'token-left') : null],
        ['last fetch', t.last_fetch ? when(t.last_fetch) + ' (' + ago(t.last_fetch) + ')' : null],
        ['last result', t.last_result], ['last fetch error', t.last_error]])));
    }
    if (c.profile) {
      var p = profileOf(c.profile), cert = p && p.client_certificate;
      parts.push(section('Profile ' + c.profile, cert ? dl([
        ['subject', cert.subject], ['issuer', cert.issuer], ['serial', cert.serial], ['not after', when(cert.not_after)],
        ['expires in', countdown(cert.expires_in_seconds)], ['rotated', cert.rotated_at ? when(cert.rotated_at) : null],
        ['last change rejected', cert.last_change_rejected]]) : muted('trust settings only: no client certificate')));
    }
    if (list(c.nodes).length) {
      parts.push(section('Nodes', el('ul', { class: 'nodes' }, list(c.nodes).map(function (n) {
        var d = nodeDetail(n.cluster, n.name) || {};
        return el('li', null, el('span', { class: 'node ' + n.state }, el('span', { class: 'dot', 'aria-hidden': 'true' }), n.cluster + '/' + n.name + ' ', el('span', { class: 'state' }, n.state)),
          d.url ? muted(' ' + d.url) : null, d.since ? muted(' since ' + when(d.since)) : null,
          d.last_error ? el('div', { class: 'small bad-text' }, d.last_error) : null);
      }))));
    }
    if (c.last_error) {
      var e = c.last_error;
      parts.push(section('Last error', dl([['at', when(e.at) + ' (' + ago(e.at) + ')'], ['code', e.code], ['status', String(e.status)], ['message', e.message]])));
    }
    parts.push(section('Test connection', testReport(r)));
    fill(r.detailsCell, el('div', { class: 'grid' }, parts));
  }

  function testReport(r) {
    if (r.testing) return muted('Testing…');
    if (r.testError) return el('p', { class: 'bad-text test-error' }, r.testError);
    var t = r.test;
    if (!t) return muted('Not tested yet: “Test connection” runs the same check as authgress test.');
    return el('div', { class: 'test-report ' + (t.ok ? 'ok' : 'fail') },
      el('p', { class: 'request' }, (t.method || 'GET') + ' ' + (t.url || '') + (t.reverse ? ' on the reverse listener' : '') + (t.status ? ' → ' + t.status : '')),
      el('ol', { class: 'stages' }, list(t.stages).map(function (s) {
        var cls = s.skipped ? 'skipped' : s.ok ? 'ok' : 'fail';
        return el('li', { class: 'stage ' + cls, 'data-stage': s.stage },
          el('span', { class: 'mark', 'aria-hidden': 'true' }, s.skipped ? '–' : s.ok ? '✓' : '✗'),
          el('span', { class: 'stage-name' }, s.stage), ' ', el('span', { class: 'stage-detail' }, s.detail));
      })),
      el('p', { class: 'result' }, 'result: ', el('strong', null, t.result || (t.ok ? 'ok' : 'failed'))));
  }

  function renderTestStatus(r) {
    r.testBtn.disabled = r.testing;
    var t = r.test;
    if (r.testing) { fill(r.testStatus, muted('testing…')); r.testStatus.className = 'test-status'; return; }
    if (r.testError) { fill(r.testStatus, '✗ ' + r.testError); r.testStatus.className = 'test-status fail'; return; }
    if (!t) { fill(r.testStatus); r.testStatus.className = 'test-status'; return; }
    if (t.ok) { fill(r.testStatus, '✓ ok' + (t.status ? ' (' + t.status + ')' : '')); r.testStatus.className = 'test-status ok'; return; }
    var failed = list(t.stages).find(function (s) { return !s.ok; });
    fill(r.testStatus, '✗ failed at ' + (failed ? failed.stage : 'the test'));
    r.testStatus.className = 'test-status fail';
  }

  function runTest(r) {
    if (r.testing) return;
    r.testing = true;
    r.test = null;
    r.testError = '';
    r.expanded = true;
    renderTestStatus(r);
    renderDetails(r);
    fetch('/api/test/' + encodeURIComponent(r.name), {
      method: 'POST', headers: { 'X-CSRF-Token': csrf }, credentials: 'same-origin', cache: 'no-store'
    }).then(function (resp) {
      return resp.json().then(function (body) { return { resp: resp, body: body }; }, function () { return { resp: resp, body: null }; });
    }).then(function (x) {
      if (x.resp.ok && x.body) r.test = x.body;
      else r.testError = (x.body && x.body.message) || ('HTTP ' + x.resp.status);
    }, function (err) {
      r.testError = 'the test request failed: ' + err.message;
    }).then(function () {
      r.testing = false;
      renderTestStatus(r);
      renderDetails(r);
    });
  }

  function applyFilter() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (r) {
      var match = words.every(function (w) { return r.haystack.indexOf(w) >= 0; });
      r.row.hidden = !match;
      r.details.hidden = !match || !r.expanded;
      if (match) shown++;
    });
    document.getElementById('empty').hidden = shown > 0 || rows.size === 0;
    summary(shown);
  }

  function summary(shown) {
    if (!doc) return;
    var cs = list(doc.connections), valid = 0, req = 0, errs = 0;
    cs.forEach(function (c) { if (c.token && c.token.state === 'valid') valid++; req += c.requests || 0; errs += c.errors || 0; });
    var withToken = cs.filter(function (c) { return c.token; }).length;
    var text = cs.length + ' connection' + (cs.length === 1 ? '' : 's');
    if (shown !== cs.length) text = shown + ' of ' + text;
    text += ' · ' + valid + ' of ' + withToken + ' tokens valid · ' + plural(req, 'request') + ' · ' + plural(errs, 'error') + ' since start';
    fill(document.getElementById('summary'), text);
  }

  function render(d) {
    doc = d;
    fill(document.getElementById('config'), d.config || '');
    fill(document.getElementById('loaded'), d.loaded_at ? ago(d.loaded_at) : '');
    document.getElementById('loaded').title = when(d.loaded_at);
    fill(document.getElementById('version'), d.version || '');
    var seen = new Set(), order = [];
    list(d.connections).forEach(function (c) {
      seen.add(c.name);
      var r = rows.get(c.name);
      if (!r) { r = makeRow(c.name); rows.set(c.name, r); }
      renderRow(r, c);
      order.push(r.row, r.details);
    });
    rows.forEach(function (r, name) {
      if (!seen.has(name)) { r.row.remove(); r.details.remove(); rows.delete(name); }
    });
    // Rows in /status order. They move only when that order changed, so a
    // refresh does not take the keyboard focus from a button.
    var cur = tbody.children;
    var same = cur.length === order.length && order.every(function (e, i) { return cur[i] === e; });
    if (!same) order.forEach(function (e) { tbody.append(e); });
    applyFilter();
  }

  function showBanner(text) {
    banner.hidden = !text;
    fill(banner, text || '');
  }

  function refresh() {
    fetch('/status', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } }).then(function (resp) {
      if (!resp.ok) throw new Error('HTTP ' + resp.status);
      return resp.json();
    }).then(function (d) {
      render(d);
      showBanner('');
      fill(document.getElementById('refreshed'), 'refreshed ' + new Date().toLocaleTimeString());
    }, function (err) {
      showBanner('Could not refresh from /status: ' + err.message + '. Showing the last known state.');
    }).then(function () {
      setTimeout(refresh, refreshSeconds * 1000);
    });
  }

  search.addEventListener('input', applyFilter);
  setInterval(tick, 1000);
  refresh();
})();
