// A client that behaves as Plezi's `PleziClient` (resources/client.js of Plezi 0.16.4, as
// seeds-protocols.md §4.1 describes it), for the browser test of Plexus's auto-dispatch
// endpoints. Plezi's own file is not on the npm registry, so this one is written from its
// documented behaviour:
// - `emit(event, ackCallback, timeoutCallback, timeout)` sends the JSON object; when an ack or
//   a timeout callback is given it sets `_EID_` to a fresh id and waits `timeout` ms (10 ms when
//   none is given) for `{"event":"_ack_","_EID_":id}`; a late ack is ignored and the timeout
//   callback (or `ontimeout`) runs instead;
// - an incoming `{event: X, ...}` calls `client[X](message)`, else `client.unknown(message)`;
//   a 404 arrives as event `err`;
// - `autoreconnect` (default false) with `reconnect_interval` 200 ms.
(function () {
  function PleziClient(url, autoconnect) {
    this.url = url;
    this.autoreconnect = false;
    this.reconnect_interval = 200;
    this.log_events = false;
    this.pending = {};
    this.next_eid = 1;
    if (autoconnect !== false) this.connect();
  }

  PleziClient.prototype.connect = function () {
    var client = this;
    this.ws = new WebSocket(this.url);
    this.ws.onopen = function (e) {
      if (typeof client.onopen === "function") client.onopen(e);
    };
    this.ws.onclose = function (e) {
      if (typeof client.onclose === "function") client.onclose(e);
      if (client.autoreconnect) {
        setTimeout(function () {
          client.connect();
        }, client.reconnect_interval);
      }
    };
    this.ws.onmessage = function (e) {
      var msg;
      try {
        msg = JSON.parse(e.data);
      } catch (err) {
        if (typeof client.unknown === "function") client.unknown(e.data);
        return;
      }
      if (client.log_events) console.log(msg);
      if (msg.event === "_ack_") {
        var waiting = client.pending[msg._EID_];
        if (waiting) {
          delete client.pending[msg._EID_];
          clearTimeout(waiting.timer);
          if (typeof waiting.ack === "function") waiting.ack(msg);
        }
        return;
      }
      if (msg.event && typeof client[msg.event] === "function") {
        client[msg.event](msg);
      } else if (typeof client.unknown === "function") {
        client.unknown(msg);
      }
    };
  };

  PleziClient.prototype.emit = function (event, ackCallback, timeoutCallback, timeout) {
    var client = this;
    if (ackCallback || timeoutCallback || timeout) {
      var eid = this.next_eid++;
      event._EID_ = eid;
      var waiting = { ack: ackCallback };
      waiting.timer = setTimeout(function () {
        delete client.pending[eid];
        if (typeof timeoutCallback === "function") timeoutCallback(event);
        else if (typeof client.ontimeout === "function") client.ontimeout(event);
      }, timeout || 10);
      this.pending[eid] = waiting;
    }
    this.ws.send(JSON.stringify(event));
    return this;
  };

  PleziClient.prototype.close = function () {
    this.autoreconnect = false;
    this.ws.close();
  };

  window.PleziClient = PleziClient;
})();
