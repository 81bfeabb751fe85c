// The staff console: sign-in with the second factor, work queues, patient search, records and
// conversations as the server returns them for the signed-in user's roles.
//
// The page decides nothing about who may see what: every view shows exactly what the API
// returned (the store leaves out what a role may not see and says what it withheld). Patient
// text is only ever set with textContent, never parsed as HTML. State-changing requests send
// the session's CSRF token in x-csrf-token; the session cookie is HttpOnly and never seen here.
'use strict';
(() => {
  const root = document.getElementById('perimeter-console');
  const who = document.getElementById('pc-who');
  let csrf = '';
  let me = null;
  let idleTimer = null;

  /** Thrown after the session ended: the sign-in screen is already showing. */
  class SignedOut extends Error {}

  const QUEUES = ['front_desk', 'scheduling', 'refills', 'billing', 'records', 'nurse_triage', 'clinician'];
  const LABELS = {
    front_desk: 'Front desk', scheduling: 'Scheduling', refills: 'Refills', billing: 'Billing',
    records: 'Records', nurse_triage: 'Nurse triage', clinician: 'Clinician',
  };
  const REASONS = [
    ['medical_emergency', 'Medical emergency'],
    ['patient_unable_to_consent', 'Patient unable to consent'],
    ['covering_clinician', 'Covering for another clinician'],
    ['urgent_follow_up', 'Urgent follow-up'],
    ['other', 'Other (explain)'],
  ];

  /** An element with attributes (`data-pc` and friends) and children (strings become text). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v === null || v === undefined) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }

  function show(...nodes) {
    root.replaceChildren(...nodes);
    const first = root.querySelector('input, select, textarea, button');
    if (first) first.focus();
  }

  function when(millis) {
    return typeof millis === 'number' ? new Date(millis).toLocaleString() : '';
  }

  function errorText(res, fallback) {
    const e = res && res.data && res.data.error;
    return (e && e.message) || fallback;
  }

  /** A JSON request; `{status, ok, data, headers}`. A 401 after sign-in ends the session view. */
  async function api(method, path, body) {
    const headers = { accept: 'application/json' };
    if (method !== 'GET') headers['x-csrf-token'] = csrf;
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (_) {
      return { status: 0, ok: false, data: { error: { message: 'The server cannot be reached. Check the connection and try again.' } } };
    }
    let data = null;
    try { data = await r.json(); } catch (_) { data = null; }
    if (r.status === 401 && me) {
      signedOut('Your session has ended (15 minutes without activity, the 12-hour limit, or a sign-out elsewhere). Sign in again to go on.');
      throw new SignedOut();
    }
    return { status: r.status, ok: r.ok, data, headers: r.headers };
  }

  function signedOut(message) {
    me = null;
    csrf = '';
    if (idleTimer) clearInterval(idleTimer);
    idleTimer = null;
    who.replaceChildren();
    login(message);
  }

  /** Runs a handler; a SignedOut stops it quietly. */
  function guarded(fn) {
    return async (ev) => {
      if (ev && ev.preventDefault) ev.preventDefault();
      try { await fn(ev); } catch (e) { if (!(e instanceof SignedOut)) throw e; }
    };
  }

  // ---- signing in ----

  function login(message) {
    const error = el('p', { class: 'pc-error', 'data-pc': 'error', role: 'alert' });
    const form = el('form', { 'data-pc': 'login', autocomplete: 'on' },
      el('label', {}, 'Username', el('input', { name: 'username', autocomplete: 'username', required: true, maxlength: 128 })),
      el('label', {}, 'Password', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 128 })),
      el('button', { type: 'submit' }, 'Sign in'),
      error);
    form.addEventListener('submit', guarded(async () => {
      error.textContent = '';
      const res = await api('POST', '/api/auth/login', {
        username: form.elements.username.value,
        password: form.elements.password.value,
      });
      if (res.ok && res.data) {
        csrf = res.data.csrf_token || '';
        if (res.data.status === 'mfa_enrolment_required') return enrol(res.data);
        if (res.data.status === 'mfa_required') return secondFactor();
      }
      if (res.status === 429) {
        const wait = res.headers && res.headers.get('retry-after');
        error.textContent = errorText(res, 'Too many attempts.') + (wait ? ` Try again in ${wait} seconds.` : '');
        return;
      }
      error.textContent = errorText(res, 'Signing in failed.');
    }));
    show(el('section', {}, el('h1', {}, 'Sign in'),
      message ? el('p', { class: 'pc-note', 'data-pc': 'notice' }, message) : null,
      form));
  }

  function codeForm(name, label, onCode) {
    const error = el('p', { class: 'pc-error', 'data-pc': 'error', role: 'alert' });
    const form = el('form', { 'data-pc': name },
      el('label', {}, label, el('input', { name: 'code', inputmode: name === 'recovery' ? 'text' : 'numeric', autocomplete: 'one-time-code', required: true, maxlength: 64 })),
      el('button', { type: 'submit' }, 'Continue'),
      error);
    form.addEventListener('submit', guarded(async () => {
      error.textContent = '';
      const res = await api('POST', onCode.path, { code: form.elements.code.value.trim() });
      if (res.ok && res.data && res.data.status === 'authenticated') {
        csrf = res.data.csrf_token || csrf;
        return onCode.done(res.data);
      }
      if (res.status === 401 && res.data && res.data.error && res.data.error.code === 'unauthenticated') {
        return login('The sign-in took too long. Start again.');
      }
      error.textContent = errorText(res, 'That code was not accepted.');
    }));
    return form;
  }

  function secondFactor() {
    const recovery = el('button', { type: 'button', class: 'pc-link', 'data-pc': 'use-recovery' }, 'Use a recovery code instead');
    recovery.addEventListener('click', () => show(el('section', {}, el('h1', {}, 'Recovery code'),
      el('p', { class: 'pc-note' }, 'Each recovery code works once. Set up your authenticator again after using one.'),
      codeForm('recovery', 'Recovery code', { path: '/api/auth/recovery', done: (d) => afterSignIn(d) }))));
    show(el('section', {}, el('h1', {}, 'Authenticator code'),
      codeForm('mfa', 'The 6-digit code from your authenticator app', { path: '/api/auth/mfa/verify', done: (d) => afterSignIn(d) }),
      recovery));
  }

  function enrol(d) {
    show(el('section', {}, el('h1', {}, 'Set up your authenticator'),
      el('p', {}, 'Every account needs a second factor. Scan this code with an authenticator app (or type the key), then enter the 6-digit code it shows.'),
      d.qr_svg_data_uri ? el('img', { class: 'pc-qr', src: d.qr_svg_data_uri, alt: 'QR code for your authenticator app', 'data-pc': 'qr' }) : null,
      el('p', {}, 'Key: ', el('span', { class: 'pc-secret', 'data-pc': 'secret' }, d.secret || '')),
      codeForm('enrol', 'Code from the app', { path: '/api/auth/mfa/enrol', done: (r) => afterSignIn(r) })));
  }

  function afterSignIn(d) {
    if (Array.isArray(d.recovery_codes) && d.recovery_codes.length) {
      const go = el('button', { type: 'button', 'data-pc': 'codes-saved' }, 'I have stored these codes');
      go.addEventListener('click', guarded(home));
      return show(el('section', {}, el('h1', {}, 'Recovery codes'),
        el('p', {}, 'Store these codes somewhere safe. Each one signs you in once if you lose your authenticator. They are not shown again.'),
        el('ul', { class: 'pc-codes', 'data-pc': 'recovery-codes' }, d.recovery_codes.map((c) => el('li', {}, c))),
        go));
    }
    if (typeof d.recovery_codes_left === 'number' && d.recovery_codes_left < 3) {
      alert(`Only ${d.recovery_codes_left} recovery codes are left. Ask an administrator to reset your second factor to get new ones.`);
    }
    return home();
  }

  // ---- signed in ----

  const can = (p) => !!me && me.permissions.includes(p);

  async function home() {
    const res = await api('GET', '/api/auth/me');
    if (!res.ok || !res.data) return login('Sign in to go on.');
    me = res.data;
    csrf = me.csrf_token || csrf;
    const out = el('button', { type: 'button', class: 'pc-secondary', 'data-pc': 'sign-out' }, 'Sign out');
    out.addEventListener('click', guarded(async () => {
      await api('POST', '/api/auth/logout');
      signedOut('You are signed out.');
    }));
    const everywhere = el('button', { type: 'button', class: 'pc-secondary', 'data-pc': 'sign-out-everywhere' }, 'Sign out everywhere');
    everywhere.addEventListener('click', guarded(async () => {
      await api('POST', '/api/auth/logout-everywhere');
      signedOut('You are signed out on every device.');
    }));
    who.replaceChildren(el('span', { 'data-pc': 'user' }, `${me.display_name} (${me.roles.join(', ')})`), out, everywhere);
    if (idleTimer) clearInterval(idleTimer);
    // /api/auth/me is passive: polling it notices a session that ended without extending it.
    idleTimer = setInterval(guarded(async () => { await api('GET', '/api/auth/me'); }), 60000);
    dashboard();
  }

  function dashboard() {
    const parts = [];
    if (can('view_queue')) parts.push(queuePanel());
    if (can('search_patients')) parts.push(searchPanel());
    if (!parts.length) {
      parts.push(el('section', { 'data-pc': 'no-work' }, el('p', {}, 'Your role has no work queues or patient records in this console. Administration, audit and privacy work go through the API (see /api/openapi.json).')));
    }
    show(...parts);
  }

  function queuePanel() {
    const list = el('div', { 'data-pc': 'queue' });
    const select = el('select', { name: 'queue', 'aria-label': 'Queue' }, QUEUES.map((q) => el('option', { value: q }, LABELS[q])));
    const form = el('form', { class: 'pc-inline', 'data-pc': 'queue-form' }, el('label', {}, 'Queue', select), el('button', { type: 'submit' }, 'Open'));
    form.addEventListener('submit', guarded(async () => {
      const res = await api('GET', `/api/queues/${encodeURIComponent(select.value)}?limit=50`);
      if (!res.ok) { list.replaceChildren(el('p', { class: 'pc-error' }, errorText(res, 'The queue cannot be shown.'))); return; }
      const items = [...(res.data.emergencies || []), ...(res.data.items || [])];
      const seen = new Set();
      const rows = items.filter((i) => !seen.has(i.conversation_id) && seen.add(i.conversation_id)).map((i) => {
        const open = el('button', { type: 'button', class: 'pc-link', 'data-pc': 'open-conversation' }, 'Open');
        open.addEventListener('click', guarded(() => conversation(i.conversation_id, i.patient_id)));
        return el('tr', { class: i.urgency === 'emergency' ? 'pc-emergency' : '' },
          el('td', {}, i.urgency), el('td', {}, i.intent || 'not triaged'), el('td', {}, i.status),
          el('td', {}, i.sla_due_at_millis ? when(i.sla_due_at_millis) + (i.overdue ? ' (overdue)' : '') : ''),
          el('td', {}, open));
      });
      list.replaceChildren(rows.length
        ? el('table', {}, el('thead', {}, el('tr', {}, ['Urgency', 'Intent', 'Status', 'Due', ''].map((h) => el('th', {}, h)))), el('tbody', {}, rows))
        : el('p', { class: 'pc-note' }, 'Nothing waiting in this queue.'));
    }));
    return el('section', {}, el('h2', {}, 'Work queues'), form, list);
  }

  function searchPanel() {
    const results = el('div', { 'data-pc': 'results' });
    const by = el('select', { name: 'by', 'aria-label': 'Search by' },
      [['name', 'Name'], ['phone', 'Phone'], ['email', 'E-mail'], ['mrn', 'MRN'], ['member_id', 'Member ID'], ['account_number', 'Account number']]
        .map(([v, t]) => el('option', { value: v }, t)));
    const value = el('input', { name: 'value', 'aria-label': 'Search for', required: true, maxlength: 200, autocomplete: 'off' });
    const form = el('form', { class: 'pc-inline', 'data-pc': 'search' }, el('label', {}, 'Find a patient by', by), value, el('button', { type: 'submit' }, 'Search'));
    form.addEventListener('submit', guarded(async () => {
      const res = await api('GET', `/api/patients?${encodeURIComponent(by.value)}=${encodeURIComponent(value.value)}`);
      if (!res.ok) { results.replaceChildren(el('p', { class: 'pc-error' }, errorText(res, 'The search failed.'))); return; }
      const found = res.data.patients || [];
      results.replaceChildren(found.length
        ? el('ul', {}, found.map((p) => {
          const name = p.demographics ? `${p.demographics.family_name}, ${p.demographics.given_name}` : 'Patient';
          const open = el('button', { type: 'button', class: 'pc-link', 'data-pc': 'open-patient' }, name);
          open.addEventListener('click', guarded(() => patient(p.id)));
          return el('li', {}, open, p.demographics && p.demographics.birth_date ? ` born ${p.demographics.birth_date}` : '');
        }))
        : el('p', { class: 'pc-note' }, 'No patient of this practice matches.'));
    }));
    return el('section', {}, el('h2', {}, 'Patients'), form, results);
  }

  function back() {
    const b = el('button', { type: 'button', class: 'pc-secondary', 'data-pc': 'back' }, 'Back');
    b.addEventListener('click', () => dashboard());
    return b;
  }

  function field(label, value) {
    return value === null || value === undefined || value === '' ? null : [el('dt', {}, label), el('dd', {}, String(value))];
  }

  function withheldNote(view, categories) {
    const missing = categories.filter(([c]) => !view.disclosed.includes(c)).map(([, t]) => t);
    return missing.length ? el('p', { class: 'pc-withheld', 'data-pc': 'withheld' }, `Not shown for your role: ${missing.join(', ')}.`) : null;
  }

  async function patient(id) {
    const res = await api('GET', `/api/patients/${encodeURIComponent(id)}`);
    if (!res.ok) return show(el('section', {}, el('p', { class: 'pc-error' }, errorText(res, 'The record cannot be shown.')), back()));
    const v = res.data;
    const d = v.demographics || {};
    const c = v.contact || {};
    const rows = [
      field('Name', v.demographics ? `${d.given_name} ${d.family_name}` : null),
      field('Born', d.birth_date),
      field('Phone', c.phone), field('E-mail', c.email), field('Address', c.address),
      field('MRN', v.identifiers && v.identifiers.mrn),
      field('Notes', v.notes),
    ].filter(Boolean).flat();
    const parts = [el('h1', {}, 'Patient record'), el('dl', { 'data-pc': 'record' }, rows),
      withheldNote(v, [['demographics', 'demographics'], ['contact', 'contact data'], ['identifiers', 'identifiers'], ['insurance', 'insurance'], ['billing', 'billing']])];
    if (Array.isArray(v.coverages)) {
      parts.push(el('h2', {}, 'Insurance'), v.coverages.length
        ? el('ul', { 'data-pc': 'coverages' }, v.coverages.map((cv) => el('li', {},
          [cv.payer, cv.plan, `member ${cv.member_id}`, cv.primary ? 'primary' : null, cv.ended_at_millis ? 'ended' : null].filter(Boolean).join(' · '))))
        : el('p', { class: 'pc-note' }, 'No coverage recorded.'));
    }
    if (v.account) {
      parts.push(el('h2', {}, 'Billing account'), el('p', { 'data-pc': 'account' },
        `${v.account.account_number} · balance ${(v.account.balance_cents / 100).toFixed(2)}`));
    }
    if (v.break_glass_available) parts.push(breakGlass(id, () => patient(id)));
    const convs = el('div', { 'data-pc': 'conversations' });
    if (can('read_conversation')) {
      const cr = await api('GET', `/api/patients/${encodeURIComponent(id)}/conversations`);
      if (cr.ok) {
        const list = cr.data.conversations || [];
        convs.replaceChildren(el('h2', {}, 'Conversations'), list.length
          ? el('ul', {}, list.map((cv) => {
            const open = el('button', { type: 'button', class: 'pc-link', 'data-pc': 'open-conversation' }, cv.subject || `${cv.channel} conversation`);
            open.addEventListener('click', guarded(() => conversation(cv.id, id)));
            return el('li', {}, open, el('span', { class: 'pc-meta' }, ` ${cv.status}, updated ${when(cv.updated_at_millis)}`));
          }))
          : el('p', { class: 'pc-note' }, 'No conversations.'));
      }
    }
    show(el('section', {}, ...parts, convs, back()));
  }

  function breakGlass(patientId, then) {
    const reason = el('select', { name: 'reason_code' }, REASONS.map(([v, t]) => el('option', { value: v }, t)));
    const text = el('textarea', { name: 'reason_text', required: true, maxlength: 500, rows: 2 });
    const error = el('p', { class: 'pc-error', role: 'alert' });
    const form = el('form', { 'data-pc': 'break-glass' },
      el('p', {}, 'Parts of this record are outside your care relationships. In an emergency you may open them for 60 minutes; the reason is recorded and the privacy officer is told.'),
      el('label', {}, 'Reason', reason), el('label', {}, 'Explain', text),
      el('button', { type: 'submit' }, 'Open for an emergency'), error);
    form.addEventListener('submit', guarded(async () => {
      const res = await api('POST', `/api/patients/${encodeURIComponent(patientId)}/break-glass`, { reason_code: reason.value, reason_text: text.value });
      if (res.ok) return then();
      error.textContent = errorText(res, 'Emergency access was refused.');
    }));
    return el('details', {}, el('summary', {}, 'Emergency access'), form);
  }

  async function conversation(id, patientId) {
    const res = await api('GET', `/api/conversations/${encodeURIComponent(id)}/messages`);
    if (!res.ok) return show(el('section', {}, el('p', { class: 'pc-error' }, errorText(res, 'The conversation cannot be shown.')), back()));
    const page = res.data;
    const thread = el('ol', { class: 'pc-thread', 'data-pc': 'thread' }, page.messages.map((m) => el('li', { 'data-pc-direction': m.direction },
      el('div', { class: 'pc-meta' }, `${m.direction} · ${m.category.replaceAll('_', ' ')} · ${when(m.created_at_millis)}`),
      m.withheld
        ? el('p', { class: 'pc-withheld', 'data-pc': 'withheld' }, 'Withheld: this message is not needed for your role.')
        : el('p', { 'data-pc': 'body' }, m.body || ''))));
    const parts = [el('h1', {}, page.conversation.subject || 'Conversation'),
      el('p', { class: 'pc-meta' }, `${page.conversation.channel} · ${page.conversation.status} · purpose ${page.purpose}`), thread];
    const nr = await api('GET', `/api/conversations/${encodeURIComponent(id)}/notes`);
    if (nr.ok && nr.data && Array.isArray(nr.data.notes)) {
      parts.push(el('h2', {}, 'Staff notes'), nr.data.notes.length
        ? el('ol', { class: 'pc-thread', 'data-pc': 'notes' }, nr.data.notes.map((n) => el('li', { 'data-pc-direction': 'note' },
          el('div', { class: 'pc-meta' }, `${n.category.replaceAll('_', ' ')} · ${when(n.created_at_millis)}`),
          n.withheld
            ? el('p', { class: 'pc-withheld', 'data-pc': 'withheld' }, 'Withheld: this note is not needed for your role.')
            : el('p', { 'data-pc': 'body' }, n.body || ''))))
        : el('p', { class: 'pc-note' }, 'No staff notes yet.'));
    }
    if (page.break_glass_available) parts.push(breakGlass(patientId || page.conversation.patient_id, () => conversation(id, patientId)));
    if (can('write_internal_note')) parts.push(noteForm(id, () => conversation(id, patientId)));
    show(el('section', {}, ...parts, back()));
  }

  function noteForm(id, then) {
    const body = el('textarea', { name: 'body', required: true, maxlength: 4000, rows: 3 });
    const error = el('p', { class: 'pc-error', role: 'alert' });
    const form = el('form', { 'data-pc': 'note' }, el('label', {}, 'Internal note (staff only, never sent to the patient)', body), el('button', { type: 'submit' }, 'Add note'), error);
    form.addEventListener('submit', guarded(async () => {
      const res = await api('POST', `/api/conversations/${encodeURIComponent(id)}/notes`, { body: body.value });
      if (res.ok) return then();
      error.textContent = errorText(res, 'The note was not saved.');
    }));
    return form;
  }

  // ---- start: an existing session goes straight in ----
  (async () => {
    const res = await api('GET', '/api/auth/me');
    if (res.ok && res.data) {
      csrf = res.data.csrf_token || '';
      try { await home(); } catch (e) { if (!(e instanceof SignedOut)) throw e; }
    } else {
      login();
    }
  })();
})();
