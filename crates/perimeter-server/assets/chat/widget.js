/*
 * Perimeter patient web chat widget. No framework, no build step.
 *
 * On a practice's site, one tag embeds it:
 *   <script src="https://perimeter.example.org/chat/widget.js" async></script>
 * It adds a "Message us" button that opens the chat (this server's /chat page) in a frame, so
 * the chat's token and messages never touch the practice page's scripts. On /chat itself it
 * runs the chat. Text is only ever inserted as text (never as HTML).
 */
(function () {
  'use strict';

  var script = document.currentScript;
  var root = document.querySelector('[data-perimeter-chat="page"]');

  if (!root) {
    launcher();
    return;
  }
  chat(root);

  function launcher() {
    if (!script || !script.src) {
      return;
    }
    var origin = new URL(script.src).origin;
    var css = document.createElement('link');
    css.rel = 'stylesheet';
    css.href = origin + '/chat/widget.css';
    document.head.appendChild(css);
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'pc-launcher';
    button.textContent = 'Message us';
    button.setAttribute('aria-expanded', 'false');
    var frame = null;
    button.addEventListener('click', function () {
      if (!frame) {
        frame = document.createElement('iframe');
        frame.className = 'pc-frame';
        frame.title = 'Chat with the practice';
        frame.src = origin + '/chat';
        document.body.appendChild(frame);
      } else {
        frame.classList.toggle('pc-hidden');
      }
      button.setAttribute('aria-expanded', frame.classList.contains('pc-hidden') ? 'false' : 'true');
    });
    document.body.appendChild(button);
  }

  function chat(root) {
    var TOKEN_KEY = 'perimeter-chat-token';
    var state = { token: null, verified: false, cursor: null, streamAbort: null, retry: 0, ended: false };

    // ---- the page ---------------------------------------------------------------------------
    function el(tag, cls, text) {
      var e = document.createElement(tag);
      if (cls) { e.className = cls; }
      if (text !== undefined) { e.textContent = text; }
      return e;
    }
    function field(form, label, name, type, attrs) {
      var l = el('label', null, label);
      var i = el('input');
      i.name = name;
      i.type = type;
      i.required = true;
      Object.keys(attrs || {}).forEach(function (k) { i.setAttribute(k, attrs[k]); });
      l.appendChild(i);
      form.appendChild(l);
      return i;
    }
    function button(parent, text, cls) {
      var b = el('button', cls, text);
      b.type = 'submit';
      parent.appendChild(b);
      return b;
    }

    var app = el('div', 'pc-app');
    var head = el('header', 'pc-head');
    head.appendChild(el('h1', null, 'Message your practice'));
    var endButton = el('button', null, 'End chat');
    endButton.type = 'button';
    endButton.setAttribute('data-pc', 'end');
    head.appendChild(endButton);
    app.appendChild(head);
    var status = el('div', 'pc-status');
    status.setAttribute('data-pc', 'status');
    status.setAttribute('role', 'status');
    app.appendChild(status);
    app.appendChild(el('p', 'pc-notice',
      'In an emergency call 911. For a suicidal crisis call or text 988. This chat is read by the practice during office hours.'));

    var verify = el('section', 'pc-verify');
    verify.setAttribute('data-pc', 'verify');
    verify.appendChild(el('p', null, 'To see replies from the practice, confirm who you are. You can write before that; we will not show anything from your record until you do.'));
    var idForm = el('form');
    idForm.setAttribute('data-pc', 'identity');
    var nameInput = field(idForm, 'Full name', 'name', 'text', { autocomplete: 'name', maxlength: '200' });
    var birthInput = field(idForm, 'Birth date', 'birth_date', 'date', { autocomplete: 'bday' });
    button(idForm, 'Confirm');
    verify.appendChild(idForm);
    verify.appendChild(el('p', null, 'Or get a code by text message to the phone number the practice has on file:'));
    var phoneForm = el('form');
    phoneForm.setAttribute('data-pc', 'phone');
    var phoneInput = field(phoneForm, 'Phone number', 'phone', 'tel', { autocomplete: 'tel', maxlength: '32' });
    button(phoneForm, 'Send code');
    verify.appendChild(phoneForm);
    var codeForm = el('form', 'pc-hidden');
    codeForm.setAttribute('data-pc', 'code');
    var codeInput = field(codeForm, 'Code', 'code', 'text', { inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
    button(codeForm, 'Verify code');
    verify.appendChild(codeForm);
    var verifyError = el('p', 'pc-error');
    verifyError.setAttribute('data-pc', 'verify-error');
    verifyError.setAttribute('role', 'alert');
    verify.appendChild(verifyError);
    app.appendChild(verify);

    var log = el('ul', 'pc-log');
    log.setAttribute('data-pc', 'log');
    log.setAttribute('aria-live', 'polite');
    app.appendChild(log);

    var compose = el('form', 'pc-compose');
    compose.setAttribute('data-pc', 'compose');
    var text = el('textarea');
    text.name = 'text';
    text.maxLength = 2000;
    text.required = true;
    text.setAttribute('aria-label', 'Your message');
    text.placeholder = 'Write your message';
    compose.appendChild(text);
    button(compose, 'Send', 'pc-primary');
    app.appendChild(compose);
    var sendError = el('p', 'pc-error');
    sendError.setAttribute('data-pc', 'send-error');
    sendError.setAttribute('role', 'alert');
    app.appendChild(sendError);
    root.appendChild(app);

    function show(kind, body, extra) {
      var li = el('li', 'pc-msg pc-' + kind, body);
      li.setAttribute('data-pc-kind', kind);
      if (extra) { li.setAttribute('role', 'alert'); }
      log.appendChild(li);
      log.scrollTop = log.scrollHeight;
      return li;
    }
    function setStatus() {
      status.textContent = state.ended
        ? 'This chat has ended.'
        : state.verified
          ? 'Verified. Replies from the practice appear here.'
          : 'Not verified yet: the practice will read your messages, but nothing from your record is shown.';
      verify.classList.toggle('pc-hidden', state.verified || state.ended);
    }

    // ---- the API ----------------------------------------------------------------------------
    function api(method, path, body) {
      var headers = { 'x-perimeter-chat': state.token || '' };
      if (body !== undefined) { headers['content-type'] = 'application/json'; }
      return fetch(path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store'
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          return { status: r.status, body: j };
        });
      });
    }
    function errorText(res) {
      return (res.body && res.body.error && res.body.error.message) || 'Something went wrong; please try again.';
    }
    function randomId() {
      var a = new Uint8Array(12);
      crypto.getRandomValues(a);
      return Array.prototype.map.call(a, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
    }

    function startSession() {
      state.ended = false;
      state.verified = false;
      state.cursor = null;
      return api('POST', '/api/chat/sessions').then(function (res) {
        if (res.status !== 201) { throw new Error(errorText(res)); }
        state.token = res.body.token;
        sessionStorage.setItem(TOKEN_KEY, state.token);
        setStatus();
        openStream();
      });
    }
    function sessionEnded() {
      state.ended = true;
      state.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      if (state.streamAbort) { state.streamAbort.abort(); state.streamAbort = null; }
      setStatus();
      show('system', 'This chat session has ended. Write again to start a new one.');
    }

    // Server-sent events over fetch (so the token travels in a header, never in a URL).
    function openStream() {
      if (state.streamAbort) { state.streamAbort.abort(); }
      var abort = new AbortController();
      state.streamAbort = abort;
      var path = '/api/chat/stream' + (state.cursor ? '?after=' + encodeURIComponent(state.cursor) : '');
      fetch(path, {
        headers: { 'x-perimeter-chat': state.token, accept: 'text/event-stream' },
        credentials: 'omit',
        cache: 'no-store',
        signal: abort.signal
      }).then(function (r) {
        if (r.status === 401) { sessionEnded(); return; }
        if (!r.ok || !r.body) { throw new Error('stream ' + r.status); }
        state.retry = 0;
        var reader = r.body.getReader();
        var decoder = new TextDecoder();
        var buffer = '';
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { throw new Error('stream closed'); }
            buffer += decoder.decode(chunk.value, { stream: true });
            var at;
            while ((at = buffer.indexOf('\n\n')) >= 0) {
              var raw = buffer.slice(0, at);
              buffer = buffer.slice(at + 2);
              if (dispatch(raw) === 'end') { return; }
            }
            return pump();
          });
        }
        return pump();
      }).catch(function () {
        if (abort.signal.aborted || state.ended || !state.token) { return; }
        state.retry = Math.min(state.retry + 1, 5);
        setTimeout(function () { if (state.streamAbort === abort) { openStream(); } }, 1000 * state.retry);
      });
    }
    function dispatch(raw) {
      var event = 'message';
      var data = '';
      raw.split('\n').forEach(function (line) {
        if (line.indexOf('event:') === 0) { event = line.slice(6).trim(); }
        else if (line.indexOf('data:') === 0) { data += line.slice(5).replace(/^ /, ''); }
      });
      if (!data) { return null; }
      var value;
      try { value = JSON.parse(data); } catch (e) { return null; }
      if (event === 'status') {
        var was = state.verified;
        state.verified = !!value.verified;
        setStatus();
        if (state.verified && !was) {
          // What was written before is now in the patient's conversation: the stream shows it.
          Array.prototype.forEach.call(log.querySelectorAll('li[data-pc-local]'), function (li) { li.remove(); });
          show('system', 'Thank you, you are verified.');
        }
      } else if (event === 'message') {
        state.cursor = value.cursor;
        var li = show(value.direction === 'inbound' ? 'inbound' : 'outbound', value.body);
        li.setAttribute('data-pc-from', value.from_staff ? 'staff' : (value.direction === 'inbound' ? 'you' : 'practice'));
      } else if (event === 'end') {
        sessionEnded();
        return 'end';
      }
      return null;
    }

    // ---- what the patient does --------------------------------------------------------------
    function ensureSession() {
      return state.token ? Promise.resolve() : startSession();
    }
    compose.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = text.value;
      if (!body.trim()) { return; }
      sendError.textContent = '';
      ensureSession().then(function () {
        return api('POST', '/api/chat/messages', { client_id: randomId(), text: body });
      }).then(function (res) {
        if (res.status === 401) { sessionEnded(); sendError.textContent = 'Your chat had ended; please send your message again.'; return; }
        if (res.status !== 201 && res.status !== 200) { sendError.textContent = errorText(res); return; }
        text.value = '';
        if (!res.body.verified) {
          // Unverified: the practice has it; the chat shows it here only.
          var mine = show('inbound', body);
          mine.setAttribute('data-pc-from', 'you');
          mine.setAttribute('data-pc-local', '1');
        }
        if (res.body.emergency && res.body.emergency_message) {
          show('emergency', res.body.emergency_message, true);
        }
      }).catch(function (e) { sendError.textContent = e.message || 'Could not send; please try again.'; });
    });
    function verified(res) {
      if (res.status === 200 && res.body.verified) {
        verifyError.textContent = '';
        openStream();
        return;
      }
      if (res.status === 401 && res.body.error && res.body.error.code === 'chat_session_ended') {
        sessionEnded();
      }
      verifyError.textContent = errorText(res);
    }
    idForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      ensureSession().then(function () {
        return api('POST', '/api/chat/verify', { name: nameInput.value, birth_date: birthInput.value });
      }).then(verified).catch(function (e) { verifyError.textContent = e.message; });
    });
    phoneForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      ensureSession().then(function () {
        return api('POST', '/api/chat/code', { phone: phoneInput.value });
      }).then(function (res) {
        if (res.status === 202) {
          verifyError.textContent = '';
          codeForm.classList.remove('pc-hidden');
          show('system', res.body.message);
        } else {
          verifyError.textContent = errorText(res);
        }
      }).catch(function (e) { verifyError.textContent = e.message; });
    });
    codeForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      api('POST', '/api/chat/code/verify', { code: codeInput.value.trim() })
        .then(verified)
        .catch(function (e) { verifyError.textContent = e.message; });
    });
    endButton.addEventListener('click', function () {
      if (!state.token) { return; }
      api('DELETE', '/api/chat/session').then(sessionEnded);
    });

    // A reload of the tab keeps its session (sessionStorage is per tab and origin).
    state.token = sessionStorage.getItem(TOKEN_KEY);
    setStatus();
    if (state.token) {
      openStream();
    } else {
      startSession().catch(function (e) { sendError.textContent = e.message; });
    }
  }
}());
