'use strict';
(function () {
  var KEY = 'playground.apiKey';
  var MAX_TOKENS = 2048;
  var messages = [];
  var current = null;
  var $ = function (id) { return document.getElementById(id); };

  function init() {
    var fromHash = new URLSearchParams(location.hash.slice(1)).get('key');
    if (fromHash) {
      sessionStorage.setItem(KEY, fromHash);
      history.replaceState(null, '', location.pathname + location.search);
    }
    $('api-key').value = sessionStorage.getItem(KEY) || '';
    $('api-key').addEventListener('change', function () { sessionStorage.setItem(KEY, $('api-key').value.trim()); });
    $('prompt-form').addEventListener('submit', function (event) { event.preventDefault(); send(); });
    $('prompt').addEventListener('keydown', function (event) {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); send(); }
    });
    $('stop').addEventListener('click', stop);
    $('clear').addEventListener('click', function () { if (!current) { messages = []; $('conversation').textContent = ''; hideError(); } });
  }

  function send() {
    var key = $('api-key').value.trim();
    var text = $('prompt').value.trim();
    if (current || !text) return;
    if (!key) { showError('Enter an API key first (npm start prints one; it is DEV_API_KEY in .dev.vars).'); return; }
    sessionStorage.setItem(KEY, key);
    hideError();
    var turn = addTurn(text);
    messages.push({ role: 'user', content: text });
    $('prompt').value = '';
    var startedAt = performance.now();
    current = { turn: turn, source: null, url: null };
    setBusy(true, 'starting');
    resetStats();
    fetch('/v1/streams', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + key, 'content-type': 'application/json' },
      // A bound on the answer leaves room for the conversation: without one the gateway gives the
      // answer all the context left, which a prompt estimated a token short fills over the limit.
      body: JSON.stringify({ messages: messages, max_tokens: MAX_TOKENS })
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) throw new Error(describe(response.status, body));
        follow(turn, body.url, startedAt);
      });
    }).catch(function (error) {
      fail(turn, error instanceof TypeError ? 'The gateway could not be reached.' : error.message);
    });
  }

  function follow(turn, url, startedAt) {
    var source = new EventSource(url);
    var firstAt = null;
    var tokens = 0;
    current.source = source;
    current.url = url;
    setBusy(true, 'waiting for the first token');
    var answer = '';
    var onText = function (target, isAnswer) {
      return function (event) {
        var now = performance.now();
        if (firstAt === null) {
          firstAt = now;
          $('ttft').textContent = Math.round(now - startedAt) + ' ms';
          setBusy(true, 'streaming');
        }
        if (isAnswer && answer === '') turn.reasoning.open = false;
        tokens++;
        var text = JSON.parse(event.data).text;
        if (isAnswer) {
          // The answer begins with the blank line that follows the reasoning: not shown.
          answer += text;
          target.textContent = answer.replace(/^\s+/, '');
        } else {
          target.textContent += text;
        }
        $('tokens').textContent = String(tokens);
        if (tokens > 1 && now > firstAt) $('tps').textContent = ((tokens - 1) * 1000 / (now - firstAt)).toFixed(1);
      };
    };
    source.addEventListener('reasoning', onText(turn.reasoningText, false));
    source.addEventListener('content', onText(turn.answer, true));
    source.addEventListener('usage', function (event) {
      var usage = JSON.parse(event.data);
      $('tokens').textContent = String(usage.completion_tokens);
      var elapsed = firstAt === null ? 0 : performance.now() - firstAt;
      if (usage.completion_tokens > 1 && elapsed > 0) $('tps').textContent = ((usage.completion_tokens - 1) * 1000 / elapsed).toFixed(1);
    });
    source.addEventListener('done', function (event) {
      source.close();
      messages.push({ role: 'assistant', content: answer });
      finish('done (' + JSON.parse(event.data).finish_reason + ')');
      turn.element.dataset.state = 'done';
    });
    source.addEventListener('error', function (event) {
      // Two kinds share the name: the stream's own error event (it has data) and the browser's
      // connection error (no data). EventSource retries a dropped connection by itself.
      if (typeof event.data === 'string') {
        source.close();
        var body = JSON.parse(event.data);
        fail(turn, body.error.message + (body.error.code ? ' (' + body.error.code + ')' : ''));
      } else if (source.readyState === EventSource.CLOSED) {
        fail(turn, 'The stream could not be opened: its link expired or is not valid.');
      } else {
        setBusy(true, 'reconnecting');
      }
    });
  }

  function stop() {
    if (!current) return;
    var turn = current.turn;
    if (current.source) current.source.close();
    if (current.url) fetch(current.url.replace('/events?', '/cancel?'), { method: 'POST' }).catch(function () {});
    messages.pop();
    finish('stopped');
    turn.element.dataset.state = 'stopped';
  }

  function fail(turn, message) {
    if (current && current.source) current.source.close();
    messages.pop();
    turn.error.textContent = message;
    turn.error.hidden = false;
    if (turn.reasoningText.textContent === '') turn.reasoning.hidden = true;
    turn.element.dataset.state = 'error';
    finish('failed');
  }

  function finish(state) {
    current = null;
    setBusy(false, state);
  }

  function describe(status, body) {
    var error = body && body.error;
    if (!error) return 'The gateway answered HTTP ' + status + '.';
    return error.message + ' (HTTP ' + status + (error.code ? ', ' + error.code : '') + ')';
  }

  function addTurn(text) {
    var element = $('turn-template').content.firstElementChild.cloneNode(true);
    element.querySelector('.user').textContent = text;
    $('conversation').appendChild(element);
    return {
      element: element,
      reasoning: element.querySelector('.reasoning'),
      reasoningText: element.querySelector('.reasoning-text'),
      answer: element.querySelector('.answer'),
      error: element.querySelector('.turn-error')
    };
  }

  function resetStats() {
    $('ttft').textContent = '-';
    $('tps').textContent = '-';
    $('tokens').textContent = '-';
  }

  function setBusy(busy, state) {
    $('send').disabled = busy;
    $('stop').disabled = !busy;
    $('state').textContent = state;
  }

  function showError(message) {
    $('error').textContent = message;
    $('error').hidden = false;
  }

  function hideError() {
    $('error').hidden = true;
  }

  init();
})();
