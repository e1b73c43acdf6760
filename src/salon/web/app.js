// salon's web client: IRC over WebSocket (IRCv3 "websocket", text.ircv3.net) to the
// server that served this page. This module speaks the protocol and takes what the user
// types; view.js shows it, irc.js is the line codec, state.js the shared state.

import { link, tokenArrived, tokenRefused, upload, uploadUrl } from "./files.js";
import { byteLength, escapeTag, formatLine, formatTagged, nickOf, parseLine, splitText } from "./irc.js";
import { $, bareChannel, fold, isChannel, isMe, prefixes, state } from "./state.js";
import {
  add, buffer, clear, focusLine, historyStart, hooks, info, joinPart, loading, problem, reaction, redacted,
  renderBuffers, renderIdentity, renderReply, renderTopic, renderTyping, renderUsers, serverBuffer,
  setUp, show,
} from "./view.js";

const CAPS_WANTED = [
  "message-tags", "server-time", "echo-message", "batch", "multi-prefix", "away-notify",
  "draft/chathistory", "draft/event-playback", "draft/read-marker", "draft/message-redaction",
  "draft/multiline", "draft/metadata-3", "soju.im/search",
];
// The draft/metadata-3 keys shown: next to messages and in the list of people.
const META_KEYS = ["display-name", "avatar"];
const HISTORY_LINES = 100; // lines asked for at once: at a join, and for each page
// A relayed line is at most 512 bytes with CR LF, the sender's prefix and the command; the
// server refuses longer ones (417). Until our own prefix is known (from our JOIN), a host of
// 63 bytes and a user of 10 are assumed.
const LINE_BYTES = 510;
const SASL_CHUNK = 400; // AUTHENTICATE payloads are sent in pieces of 400 bytes
// typing: "clients SHOULD NOT send the active notification more than once every 3
// seconds"; a received one lasts 6 s ("active") or 30 s ("paused").
const TYPING_EVERY = 3000;
const TYPING_FOR = { active: 6000, paused: 30000 };

// ------------------------------------------------------------------ the connection

const connected = () => Boolean(state.ws && state.ws.readyState === WebSocket.OPEN);

// A line as typed (/raw, or a command the client does not know), CR, LF and NUL as spaces.
function sendRaw(line) {
  if (connected()) state.ws.send(line.replace(/[\r\n\0]/g, " "));
}

function send(command, ...params) {
  if (connected()) state.ws.send(formatLine(command, params));
}

function sendTagged(tags, command, ...params) {
  if (connected()) state.ws.send(formatTagged(tags, command, params));
}

function status(text) {
  $("status").textContent = text;
  $("status").hidden = !text;
}

function connect() {
  clearTimeout(state.retryTimer);
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
  const ws = new WebSocket(url, ["text.ircv3.net"]);
  state.ws = ws;
  state.registered = false;
  state.nick = state.wanted;
  state.caps.clear();
  state.capsOffered.clear();
  state.batches.clear();
  // A connection given up (a failed login) may still report its end after the next one
  // started: only the current connection's events count.
  ws.onopen = () => {
    if (state.ws !== ws) return;
    send("CAP", "LS", "302");
    send("NICK", state.nick);
    send("USER", state.nick, "0", "*", "salon web");
  };
  ws.onmessage = (event) => {
    if (state.ws === ws && typeof event.data === "string") receive(parseLine(event.data));
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    for (const b of state.buffers.values()) { b.users.clear(); b.joined = false; loading(b, ""); b.typing.clear(); }
    if (state.current) renderUsers();
    if (state.quitting) return;
    if (!state.registered && $("app").hidden) {
      loginFailed(navigator.onLine ? $("login-error").textContent || "Could not connect." : "You are offline.");
      return;
    }
    const wait = Math.min(30, 2 ** state.retry++);
    if (navigator.onLine) {
      status(`Disconnected. Reconnecting in ${wait} s…`);
      problem(`Disconnected. Reconnecting in ${wait} s…`, serverBuffer());
    } else {
      status("Offline: waiting for the network.");
    }
    state.retryTimer = setTimeout(() => { if (!state.quitting) connect(); }, wait * 1000);
  };
}

// A login refused: on the form the first time; once chatting (a reconnect), in the server's
// buffer, and the reconnects go on.
function loginFailed(reason) {
  if (!$("app").hidden) {
    problem(reason, serverBuffer());
    if (state.ws) state.ws.close();
    return;
  }
  state.quitting = true;
  if (state.ws) state.ws.close();
  state.ws = null;
  $("login-error").textContent = reason;
  $("connect").disabled = false;
}

function requestCaps() {
  const want = CAPS_WANTED.filter((c) => state.capsOffered.has(c));
  if (state.password) {
    if (!state.capsOffered.has("sasl")) {
      loginFailed("This server does not offer logins (SASL): leave the password empty.");
      return;
    }
    want.push("sasl");
  }
  if (want.length) send("CAP", "REQ", want.join(" "));
  else send("CAP", "END");
}

function joinSaved() {
  // Subscribed before joining: each join brings the members' keys (a "metadata" batch).
  if (state.caps.has("draft/metadata-3")) send("METADATA", "*", "SUB", ...META_KEYS);
  const wanted = state.rejoin || state.firstChannels;
  if (wanted.length) send("JOIN", wanted.join(","));
  if (state.caps.has("draft/chathistory")) {
    const month = new Date(Date.now() - 30 * 86400e3).toISOString();
    send("CHATHISTORY", "TARGETS", `timestamp=${month}`, `timestamp=${new Date(Date.now() + 60e3).toISOString()}`, "50");
  }
}

// ------------------------------------------------------------------ history

function fetchHistory(b) {
  if (!state.caps.has("draft/chathistory")) return;
  loading(b, "latest");
  send("CHATHISTORY", "LATEST", b.name, "*", String(HISTORY_LINES));
}

// A reference to the first (or last) line of a buffer that came from the server.
function edge(b, last) {
  const lines = b.log.querySelectorAll(".line[data-msgid]");
  const line = last ? lines[lines.length - 1] : lines[0];
  return line ? `msgid=${line.dataset.msgid}` : "";
}

hooks.loadOlder = (b) => {
  if (!state.caps.has("draft/chathistory") || b.kind === "server" || b.kind === "search") return;
  const ref = edge(b, false);
  if (!ref) { b.hasOlder = false; return; }
  loading(b, "before");
  b.cursor = null;
  send("CHATHISTORY", "BEFORE", b.name, ref, String(HISTORY_LINES));
};

hooks.loadNewer = (b) => {
  const ref = edge(b, true);
  if (!ref) return hooks.toLatest(b);
  loading(b, "after");
  send("CHATHISTORY", "AFTER", b.name, ref, String(HISTORY_LINES));
};

hooks.toLatest = (b) => {
  clear(b);
  b.hasOlder = true;
  b.hasLatest = true;
  fetchHistory(b);
};

// A search result, or a quoted message no longer in the page: the conversation around it.
hooks.jump = (target, msgid) => {
  const b = buffer(target, isChannel(target) ? "channel" : "query");
  b.focusId = msgid;
  if (b.byId.has(msgid)) { show(b); focusLine(b, msgid); return; }
  clear(b);
  b.hasOlder = true;
  b.hasLatest = false;
  loading(b, "around");
  send("CHATHISTORY", "AROUND", target, `msgid=${msgid}`, String(HISTORY_LINES));
  show(b);
};

// The end of a chathistory batch: what it says of the conversation's ends.
function historyDone(b, count) {
  const was = b.loading;
  loading(b, "");
  b.cursor = null;
  if (was === "latest" || was === "before") {
    if (count < HISTORY_LINES) { b.hasOlder = false; historyStart(b); }
    if (was === "latest") { b.hasLatest = true; countUnread(b); }
  } else if (was === "after") {
    if (count < HISTORY_LINES) b.hasLatest = true;
  } else if (was === "around" && b === state.current && b.focusId) {
    focusLine(b, b.focusId);
  }
  if (b === state.current) hooks.markRead(b);
  if (was === "latest") setTimeout(installWorker, 3000);
}

// ------------------------------------------------------------------ read markers

// The messages of b after its read marker, not ours, are unread (after its history came).
function countUnread(b) {
  if (!b.readAt || b === state.current) return;
  let n = 0;
  for (const line of b.log.querySelectorAll(".line.message, .line.action, .line.notice")) {
    if (Number(line.dataset.time) > b.readAt && !isMe(line.dataset.nick)) n++;
  }
  b.unread = n;
  if (!n) b.mention = false;
  renderBuffers();
}

let markTimer = 0;
hooks.markRead = (b) => {
  clearTimeout(markTimer);
  markTimer = setTimeout(() => {
    if (b !== state.current || document.hidden || !state.caps.has("draft/read-marker")) return;
    if (b.kind !== "channel" && b.kind !== "query") return;
    const log = $("log");
    if (log.scrollHeight - log.scrollTop - log.clientHeight > 40 || !b.hasLatest) return;
    const last = b.log.lastElementChild;
    const newest = last ? Number(last.dataset.time) : 0;
    if (newest > b.readAt) {
      b.readAt = newest;
      send("MARKREAD", b.name, `timestamp=${new Date(newest).toISOString()}`);
    }
  }, 300);
};

function marker(p) {
  const b = state.buffers.get(fold(p[0]));
  if (!b || !p[1] || !p[1].startsWith("timestamp=")) return;
  const at = Date.parse(p[1].slice(10));
  if (isNaN(at) || at <= b.readAt) return;
  b.readAt = at;
  // Read on another device: what came before the marker is no longer unread here.
  if (b !== state.current) countUnread(b);
}

// ------------------------------------------------------------------ notifications

hooks.notify = (b, who, text) => {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const n = new Notification(b.kind === "query" ? who : `${who} in ${b.name}`, { body: text, tag: b.key });
  n.onclick = () => { window.focus(); show(b); n.close(); };
};

// The profile in the settings: one's display name and avatar (draft/metadata-3).
function saveProfile() {
  const mine = state.meta.get(fold(state.nick)) || {};
  const fields = { "display-name": $("display-name").value.trim(), avatar: $("avatar-url").value.trim() };
  let changed = false;
  for (const [key, value] of Object.entries(fields)) {
    if (value === (mine[key] || "")) continue;
    changed = true;
    if (value) send("METADATA", "*", "SET", key, value);
    else send("METADATA", "*", "SET", key);
  }
  $("profile-state").textContent = changed ? "Saving…" : "Nothing changed.";
}

// An avatar picture sent to the file host: its URL becomes the avatar, saved at once.
function uploadAvatar(file) {
  $("profile-state").textContent = "";
  upload(file, $("avatar-uploads")).then((url) => {
    $("avatar-url").value = url;
    saveProfile();
  }, () => {});
}

function renderSettings() {
  const mine = state.meta.get(fold(state.nick)) || {};
  $("profile").hidden = !state.caps.has("draft/metadata-3");
  $("avatar-upload").hidden = !uploadUrl();
  $("display-name").value = mine["display-name"] || "";
  $("avatar-url").value = mine.avatar || "";
  $("profile-state").textContent = "";
  renderNotifications();
}

function renderNotifications() {
  const supported = "Notification" in window;
  const permission = supported ? Notification.permission : "unsupported";
  $("notify-state").textContent = {
    granted: "On: mentions and private messages are notified while this page is hidden.",
    denied: "Blocked in the browser's site settings.",
    default: "Off.",
    unsupported: "This browser has no notifications.",
  }[permission];
  $("notify-on").hidden = permission !== "default";
}

// ------------------------------------------------------------------ what the server sends

function receive(msg) {
  const p = msg.params;
  const batch = msg.tags.batch ? state.batches.get(msg.tags.batch) : undefined;
  if (batch && batch.type === "draft/multiline") { batch.lines.push(msg); return; }
  const history = Boolean(batch && batch.type === "chathistory");
  if (history) batch.count++;
  switch (msg.command) {
    case "PING": send("PONG", ...p); return;
    case "CAP": return cap(p);
    case "AUTHENTICATE":
      if (p[0] === "+") {
        const bytes = new TextEncoder().encode(`\0${state.account}\0${state.password}`);
        const data = btoa(String.fromCharCode(...bytes));
        for (let i = 0; i < data.length; i += SASL_CHUNK) send("AUTHENTICATE", data.slice(i, i + SASL_CHUNK));
        if (data.length % SASL_CHUNK === 0) send("AUTHENTICATE", "+");
      }
      return;
    case "BATCH": return batchLine(msg, batch);
    case "PRIVMSG": case "NOTICE": return message(msg, history, batch);
    case "TAGMSG": return tagmsg(msg, history, batch);
    case "REDACT": {
      const b = conversationOf(msg, batch);
      if (b) redacted(b, p[1]);
      return;
    }
    case "MARKREAD": return marker(p);
    case "JOIN":
      // (In history, our own arrivals are left out: they are not news, and whether the
      // join that fetched the history is in it depends on when the store wrote it.)
      if (history && isMe(nickOf(msg.source))) return;
      if (history) return joinPart(buffer(p[0], "channel"), "join", nickOf(msg.source), "", msg.tags, true);
      return joined(msg);
    case "PART": {
      const nick = nickOf(msg.source);
      if (history) return joinPart(buffer(p[0], "channel"), "part", nick, p[1], msg.tags, true);
      const b = isMe(nick) ? state.buffers.get(fold(p[0])) : buffer(p[0], "channel");
      if (!b) { saveChannels(); return; } // closed with /close
      if (isMe(nick)) {
        b.joined = false;
        b.users.clear();
        saveChannels();
        add(b, "event", "", "You left.");
      } else {
        b.users.delete(nick);
        joinPart(b, "part", nick, p[1] || "", msg.tags, false);
      }
      if (b === state.current) renderUsers();
      return;
    }
    case "KICK": {
      const b = state.buffers.get(fold(p[0]));
      if (!b) return;
      add(b, "event", "", `${p[1]} was kicked by ${nickOf(msg.source)}${p[2] ? ": " + p[2] : ""}`, msg.tags, history);
      if (history) return;
      b.users.delete(p[1]);
      if (isMe(p[1])) { b.joined = false; b.users.clear(); saveChannels(); }
      if (b === state.current) renderUsers();
      return;
    }
    case "QUIT": {
      const nick = nickOf(msg.source);
      if (history) {
        const b = batch.params[0] && state.buffers.get(fold(batch.params[0]));
        if (b) joinPart(b, "part", nick, p[0] ? `quit: ${p[0]}` : "quit", msg.tags, true);
        return;
      }
      state.away.delete(fold(nick));
      for (const b of state.buffers.values()) {
        if (b.users.delete(nick)) joinPart(b, "part", nick, p[0] ? `quit: ${p[0]}` : "quit", msg.tags, false);
      }
      if (state.current) renderUsers();
      return;
    }
    case "NICK": return nickChange(msg, history);
    case "TOPIC": {
      const b = buffer(p[0], "channel");
      add(b, "event", "", `${nickOf(msg.source)} set the topic: ${p[1] || ""}`, msg.tags, history);
      if (history) return;
      b.topic = p[1] || "";
      if (b === state.current) renderTopic();
      return;
    }
    case "MODE":
      if (isChannel(p[0])) {
        const b = buffer(p[0], "channel");
        add(b, "event", "", `${nickOf(msg.source)} sets mode ${p.slice(1).join(" ")}`, msg.tags, history);
        if (!history) applyModes(b, p[1] || "", p.slice(2));
      }
      return;
    case "ERROR": problem(p[0] || "The server closed the connection.", serverBuffer());
      if (!state.registered) $("login-error").textContent = p[0] || "";
      return;
    case "TOKEN":
      if (p[0] === "GENERATE" && p[1] === "FILEHOST") tokenArrived(p[2]);
      return;
    case "FAIL": case "WARN": case "NOTE":
      if (p[0] === "TOKEN") { tokenRefused(p[p.length - 1]); return; }
      if (p[0] === "METADATA" && !$("settings").open) return; // (a join burst's refusals)
      if (p[0] === "METADATA") { $("profile-state").textContent = `Not saved: ${p[p.length - 1]}.`; return; }
      if (p[0] === "CHATHISTORY") for (const b of state.buffers.values()) loading(b, "");
      if (p[0] === "CHATHISTORY" && p[1] === "INVALID_TARGET") return;
      (msg.command === "NOTE" ? info : problem)(`${p[0]} ${p[1]}: ${p[p.length - 1]}`);
      return;
    case "AWAY": {
      const nick = nickOf(msg.source);
      if (p[0]) state.away.set(fold(nick), p[0]);
      else state.away.delete(fold(nick));
      if (state.current && state.current.users.has(nick)) renderUsers();
      return;
    }
    case "REGISTER":
      if (p[0] === "SUCCESS") {
        // Logged in now; a reconnect logs in with the same password.
        state.account = p[1];
        state.password = state.registering || state.password;
        info(`Account ${p[1]} registered: you are logged in.`, serverBuffer());
      } else if (p[0] === "VERIFICATION_REQUIRED") {
        info(`Account ${p[1]}: ${p[p.length - 1]}`, serverBuffer());
      }
      state.registering = "";
      return;
    case "CHATHISTORY":
      // TARGETS lists the recent conversations: each private one gets a buffer and its lines.
      if (p[0] === "TARGETS" && !isChannel(p[1])) fetchHistory(buffer(p[1], "query"));
      return;
    default:
      if (/^\d{3}$/.test(msg.command)) return numeric(msg);
  }
}

function batchLine(msg, outer) {
  const p = msg.params;
  const id = p[0].slice(1);
  if (p[0][0] === "+") {
    state.batches.set(id, { type: p[1], params: p.slice(2), tags: msg.tags, lines: [], count: 0, outer });
    return;
  }
  const ended = state.batches.get(id);
  state.batches.delete(id);
  if (!ended) return;
  if (ended.type === "soju.im/search" && !ended.found) info("No messages found.", buffer("search", "search"));
  if (ended.type === "chathistory") {
    const b = ended.params[0] && state.buffers.get(fold(ended.params[0]));
    if (b) historyDone(b, ended.count);
  }
  if (ended.type === "draft/multiline" && ended.lines.length) {
    // One message: the lines joined by line feeds, or directly where multiline-concat says.
    let text = "";
    ended.lines.forEach((line, i) => {
      if (i && !("draft/multiline-concat" in line.tags)) text += "\n";
      text += line.params[1] || "";
    });
    const first = ended.lines[0];
    const tags = { ...ended.tags };
    if (ended.outer) { tags.batch = ended.tags.batch; ended.outer.count++; }
    message({ tags, source: first.source, command: first.command, params: [ended.params[0], text] },
            Boolean(ended.outer && ended.outer.type === "chathistory"), ended.outer);
  }
}

function cap(p) {
  const sub = p[1], more = p[2] === "*";
  const list = (more ? p[3] : p[2]) || "";
  if (sub === "LS") {
    for (const item of list.split(" ").filter(Boolean)) {
      const eq = item.indexOf("=");
      state.capsOffered.set(eq < 0 ? item : item.slice(0, eq), eq < 0 ? "" : item.slice(eq + 1));
    }
    if (!more) requestCaps();
  } else if (sub === "ACK") {
    for (const c of list.split(" ").filter(Boolean)) state.caps.add(c.replace(/^-/, ""));
    if (state.caps.has("sasl") && state.password) send("AUTHENTICATE", "PLAIN");
    else send("CAP", "END");
  } else if (sub === "NAK") {
    send("CAP", "END");
  }
}

// The buffer a message to `target` from `source` belongs to (in a history batch: the
// conversation asked for, whatever my nick was then).
function conversationOf(msg, batch, create = true) {
  const target = msg.params[0];
  const from = nickOf(msg.source);
  if (isChannel(bareChannel(target))) return create ? buffer(bareChannel(target), "channel") : state.buffers.get(fold(bareChannel(target)));
  if (batch && batch.type === "chathistory" && batch.params[0]) return buffer(batch.params[0], "query");
  const other = isMe(from) ? target : from;
  return create ? buffer(other, "query") : state.buffers.get(fold(other));
}

function message(msg, history, batch) {
  const [target, raw = ""] = msg.params;
  const from = nickOf(msg.source);
  const notice = msg.command === "NOTICE";
  let text = raw, kind = notice ? "notice" : "message";
  if (text.startsWith("\x01")) {
    const body = text.replace(/^\x01|\x01$/g, "");
    const sp = body.indexOf(" ");
    const verb = (sp < 0 ? body : body.slice(0, sp)).toUpperCase();
    if (verb !== "ACTION") {
      // At most one answer in 10 s: others must not make us flood ourselves off.
      if (!notice && !history && verb === "VERSION" && Date.now() - state.versionAt > 10e3) {
        state.versionAt = Date.now();
        send("NOTICE", from, "\x01VERSION salon web client\x01");
      }
      return;
    }
    text = sp < 0 ? "" : body.slice(sp + 1);
    kind = "action";
  }
  if (batch && batch.type === "soju.im/search") {
    // A search result: shown in the search buffer, with the conversation it comes from;
    // a click (or Enter) goes to it in its conversation.
    const where = isChannel(bareChannel(target)) ? bareChannel(target) : isMe(from) ? target : from;
    batch.found = (batch.found || 0) + 1;
    const results = buffer("search", "search");
    const line = kind === "action" ? `* ${from} ${text}` : text;
    const shown = add(results, kind, kind === "action" ? "" : from, `[${where}] ${line}`, msg.tags, true);
    if (shown && msg.tags.msgid) {
      shown.dataset.found = msg.tags.msgid;
      shown.dataset.target = where;
      shown.title = "Show it in its conversation";
    }
    return;
  }
  let b;
  if (!msg.source.includes("!") || (notice && !state.registered)) b = serverBuffer(); // the server's own
  else {
    const fresh = !isChannel(bareChannel(target)) && !history && !state.buffers.has(fold(isMe(from) ? target : from));
    b = conversationOf(msg, history ? batch : undefined);
    if (fresh) fetchHistory(b); // what was said before this message
  }
  if (kind === "action") add(b, kind, "", `* ${from} ${text}`, msg.tags, history);
  else add(b, kind, from, text, msg.tags, history);
}

// TAGMSG: typing notifications and reactions.
function tagmsg(msg, history, batch) {
  const from = nickOf(msg.source);
  const typing = msg.tags["+typing"];
  if (typing !== undefined) {
    if (history || isMe(from)) return;
    const b = conversationOf(msg, batch, false);
    if (!b) return;
    if (TYPING_FOR[typing]) b.typing.set(from, Date.now() + TYPING_FOR[typing]);
    else b.typing.delete(from);
    if (b === state.current) renderTyping();
    return;
  }
  const emoji = msg.tags["+draft/react"];
  const to = msg.tags["+draft/reply"];
  if (emoji && to) {
    const b = conversationOf(msg, batch, false);
    if (b) reaction(b, to, emoji, from);
  }
}

hooks.react = (b, msgid, emoji) => sendTagged({ "+draft/react": emoji, "+draft/reply": msgid }, "TAGMSG", b.name);
hooks.redact = (b, msgid) => send("REDACT", b.name, msgid);

function joined(msg) {
  const nick = nickOf(msg.source);
  const b = buffer(msg.params[0], "channel");
  if (isMe(nick)) {
    state.prefix = msg.source;
    b.joined = true;
    b.name = msg.params[0];
    b.users.clear();
    saveChannels();
    if (!state.current || state.current.kind === "server" || state.pendingShow === fold(b.name)) {
      state.pendingShow = "";
      show(b);
    }
    if (b.hasLatest) {
      b.hasOlder = true;
      fetchHistory(b);
    }
  } else {
    b.users.set(nick, "");
    state.away.delete(fold(nick));
    joinPart(b, "join", nick, "", msg.tags, false);
    if (b === state.current) renderUsers();
  }
}

function nickChange(msg, history) {
  const old = nickOf(msg.source), nick = msg.params[0];
  if (history) return;
  if (isMe(old)) {
    state.nick = state.wanted = nick;
    localStorage.setItem("salon.nick", nick);
  }
  const query = state.buffers.get(fold(old));
  if (query && query.kind === "query" && !state.buffers.has(fold(nick))) {
    state.buffers.delete(fold(old));
    query.name = nick;
    query.key = fold(nick);
    state.buffers.set(query.key, query);
    add(query, "event", "", `${old} is now ${nick}`, msg.tags);
    renderBuffers();
    if (query === state.current) renderTopic();
  }
  if (state.meta.has(fold(old))) { state.meta.set(fold(nick), state.meta.get(fold(old))); state.meta.delete(fold(old)); }
  if (state.away.has(fold(old))) { state.away.set(fold(nick), state.away.get(fold(old))); state.away.delete(fold(old)); }
  for (const b of state.buffers.values()) {
    if (b.users.has(old)) {
      b.users.set(nick, b.users.get(old));
      b.users.delete(old);
      add(b, "event", "", `${old} is now ${nick}`, msg.tags);
    }
  }
  if (state.current) renderUsers();
}

const whoAsked = new Set(); // channels whose WHO replies (away flags) are read quietly

function numeric(msg) {
  const p = msg.params.slice(1); // the first is my nick
  const text = p[p.length - 1] || "";
  switch (msg.command) {
    case "001":
      state.registered = true;
      state.retry = 0;
      state.nick = msg.params[0];
      status("");
      $("login-view").hidden = true;
      $("app").hidden = false;
      if (!state.password) localStorage.setItem("salon.auto", "1");
      if (!state.current) show(serverBuffer());
      info(text, serverBuffer());
      joinSaved();
      return;
    case "005":
      for (const token of p.slice(0, -1)) {
        const eq = token.indexOf("=");
        state.isupport[eq < 0 ? token : token.slice(0, eq)] = eq < 0 ? "" : token.slice(eq + 1);
      }
      $("attach").hidden = !uploadUrl();
      return;
    case "332": { const b = buffer(p[0], "channel"); b.topic = p[1]; if (b === state.current) renderTopic(); return; }
    case "331": return;
    case "333": return;
    case "353": {
      const b = buffer(p[1], "channel");
      if (!b.namesFresh) { b.users.clear(); b.namesFresh = true; }
      const ranks = prefixes();
      for (const entry of p[2].split(" ").filter(Boolean)) {
        let i = 0;
        while (i < entry.length && ranks.includes(entry[i])) i++;
        b.users.set(nickOf(entry.slice(i)), entry.slice(0, i));
      }
      return;
    }
    case "366": {
      const b = buffer(p[0], "channel");
      b.namesFresh = false;
      if (b === state.current) renderUsers();
      // Who is away now (WHO's H/G flags); away-notify tells what changes later.
      if (b.joined && state.caps.has("away-notify")) { whoAsked.add(fold(b.name)); send("WHO", b.name); }
      return;
    }
    case "352": // RPL_WHOREPLY: channel user host server nick flags :hops realname
      if (!whoAsked.has(fold(p[0]))) break;
      if (p[5].startsWith("G")) state.away.set(fold(p[4]), state.away.get(fold(p[4])) || "");
      else state.away.delete(fold(p[4]));
      return;
    case "315": // RPL_ENDOFWHO
      if (!whoAsked.delete(fold(p[0]))) break;
      if (state.current && fold(state.current.name) === fold(p[0])) renderUsers();
      return;
    case "761": case "766": { // RPL_KEYVALUE target key visibility :value; RPL_KEYNOTSET
      const [target, key] = p;
      if (!META_KEYS.includes(key) || isChannel(target)) return;
      const meta = state.meta.get(fold(target)) || {};
      if (msg.command === "761") meta[key] = p[3];
      else delete meta[key];
      state.meta.set(fold(target), meta);
      renderIdentity(target);
      if (isMe(target) && $("settings").open) $("profile-state").textContent = "Saved.";
      return;
    }
    case "770": case "771": case "772": case "774": return; // SUBOK, UNSUBOK, SUBS, SYNCLATER
    case "433":
      if (!state.registered) { state.nick += "_"; send("NICK", state.nick); return; }
      break;
    case "900": return;
    case "903": send("CAP", "END"); return; // logged in: registration goes on
    case "904": case "905": case "902":
      loginFailed(`The password is not right for the account ${state.account}.`);
      return;
    case "375": case "376": case "372": case "002": case "003": case "004": case "251": case "252":
    case "253": case "254": case "255": case "265": case "266": case "250": case "422":
      info(text, serverBuffer());
      return;
  }
  const n = Number(msg.command);
  if (!state.registered && n >= 400 && n < 600) {
    loginFailed(text); // 432 (an erroneous nickname), 465 (banned)...
    return;
  }
  const where = state.current || serverBuffer();
  if (n >= 400 && n < 600) problem(p.length > 1 ? `${p.slice(0, -1).join(" ")}: ${text}` : text, where);
  else info(p.join(" "), n >= 300 && n < 400 ? where : serverBuffer());
}

// Ranks (PREFIX modes such as +o, +v) from a MODE line, kept without asking for NAMES again;
// CHANMODES says which other modes take an argument.
function applyModes(b, modes, args) {
  const m = /^\((.*)\)(.*)$/.exec(state.isupport.PREFIX) || [null, "ov", "@+"];
  const [, letters, symbols] = m;
  const [listModes = "", always = "", whenSet = ""] = (state.isupport.CHANMODES || "beI,k,l").split(",");
  let adding = true;
  for (const mode of modes) {
    if (mode === "+" || mode === "-") { adding = mode === "+"; continue; }
    const rank = letters.indexOf(mode);
    if (rank >= 0) {
      const nick = args.shift();
      const key = nick && [...b.users.keys()].find((u) => fold(u) === fold(nick));
      if (key === undefined) continue;
      const held = new Set(b.users.get(key));
      adding ? held.add(symbols[rank]) : held.delete(symbols[rank]);
      b.users.set(key, [...symbols].filter((c) => held.has(c)).join(""));
    } else if (listModes.includes(mode) || always.includes(mode) || (adding && whenSet.includes(mode))) {
      args.shift();
    }
  }
  if (b === state.current) renderUsers();
}

function saveChannels() {
  const chans = [...state.buffers.values()].filter((b) => b.kind === "channel" && b.joined).map((b) => b.name);
  localStorage.setItem("salon.channels", chans.join(","));
  state.rejoin = chans;
}

// ------------------------------------------------------------------ what the user types

// The bytes of text a PRIVMSG to `target` may carry: the line limit less ":prefix PRIVMSG
// target :" as others will receive it.
function textBudget(target) {
  const prefix = state.prefix || `${state.nick}!~xxxxxxxxx@${"x".repeat(63)}`;
  return LINE_BYTES - byteLength(`:${prefix} PRIVMSG ${target} :`);
}

// draft/multiline's limits, from the capability's value ("max-bytes=4096,max-lines=100").
function multilineLimits() {
  if (!state.caps.has("draft/multiline")) return null;
  const limits = { "max-bytes": 4096, "max-lines": 100 };
  for (const item of (state.capsOffered.get("draft/multiline") || "").split(",")) {
    const [k, v] = item.split("=");
    if (k in limits && Number(v) > 0) limits[k] = Number(v);
  }
  return limits;
}

let batchCount = 0;

function say(text, action = false) {
  const b = state.current;
  if (!b || (b.kind !== "channel" && b.kind !== "query")) {
    problem("Type /join #channel or /msg nick text first.");
    return;
  }
  const budget = textBudget(b.name) - (action ? 9 : 0); // "\x01ACTION " and "\x01"
  if (budget < 32) { problem("That name is too long to send messages to."); return; }
  if (!b.hasLatest) hooks.toLatest(b); // what is said shows at the end of the conversation
  const tags = state.replyTo && state.caps.has("message-tags") ? { "+draft/reply": state.replyTo.msgid } : {};
  state.replyTo = null;
  renderReply();
  typingSent = 0;
  const lines = text.split(/\r?\n/);
  const limits = multilineLimits();
  if (!action && lines.length > 1 && limits && lines.length <= limits["max-lines"] && byteLength(text) <= limits["max-bytes"]) {
    // One message of several lines: a draft/multiline batch, long lines cut and marked
    // to be joined again (draft/multiline-concat).
    const ref = `m${Date.now().toString(36)}${batchCount++}`;
    sendTagged(tags, "BATCH", `+${ref}`, "draft/multiline", b.name);
    for (const line of lines) {
      const pieces = line ? splitText(line, budget) : [""];
      pieces.forEach((piece, i) => sendTagged(i ? { batch: ref, "draft/multiline-concat": "" } : { batch: ref }, "PRIVMSG", b.name, piece));
    }
    send("BATCH", `-${ref}`);
    return;
  }
  for (const line of lines) {
    for (const piece of splitText(line, budget)) {
      sendTagged(tags, "PRIVMSG", b.name, action ? `\x01ACTION ${piece}\x01` : piece);
      for (const k in tags) delete tags[k]; // the reply tag goes on the first line only
      if (state.caps.has("echo-message")) continue;
      if (action) add(b, "action", "", `* ${state.nick} ${piece}`);
      else add(b, "message", state.nick, piece);
    }
  }
}

let typingSent = 0;

// typing: "active" while typing (at most every 3 s), "done" when the input is emptied.
function typed(input) {
  const b = state.current;
  if (!b || (b.kind !== "channel" && b.kind !== "query") || !state.caps.has("message-tags")) return;
  const text = input.value;
  if (!text || text.startsWith("/")) {
    if (typingSent) sendTagged({ "+typing": "done" }, "TAGMSG", b.name);
    typingSent = 0;
  } else if (Date.now() - typingSent > TYPING_EVERY) {
    typingSent = Date.now();
    sendTagged({ "+typing": "active" }, "TAGMSG", b.name);
  }
}

hooks.openQuery = (nick) => {
  const fresh = !state.buffers.has(fold(nick));
  const q = buffer(nick, "query");
  show(q);
  if (fresh) fetchHistory(q);
};

function command(line) {
  const sp = line.indexOf(" ");
  const verb = (sp < 0 ? line.slice(1) : line.slice(1, sp)).toLowerCase();
  const arg = sp < 0 ? "" : line.slice(sp + 1).trim();
  const words = arg.split(/\s+/).filter(Boolean);
  const b = state.current;
  switch (verb) {
    case "join": case "j":
      if (!words.length) return problem("Usage: /join #channel");
      state.pendingShow = fold(words[0].split(",")[0].replace(/^(?![#&])/, "#"));
      send("JOIN", words[0].split(",").map((c) => (isChannel(c) ? c : "#" + c)).join(","), ...words.slice(1));
      return;
    case "part": case "leave": {
      const chan = words[0] && isChannel(words[0]) ? words.shift() : b.kind === "channel" ? b.name : "";
      if (!chan) return problem("Usage: /part #channel [reason]");
      return send("PART", chan, words.join(" ") || "Leaving");
    }
    case "msg": case "query": {
      if (!words.length) return problem(`Usage: /${verb} nick [text]`);
      const rest = arg.slice(arg.indexOf(words[0]) + words[0].length).trim();
      if (isChannel(words[0])) show(buffer(words[0], "channel"));
      else hooks.openQuery(words[0]);
      if (rest) say(rest);
      return;
    }
    case "me":
      if (!b || b.kind === "server") return problem("/me works in a channel or a conversation.");
      return say(arg, true);
    case "nick": return words[0] ? send("NICK", words[0]) : problem("Usage: /nick newnick");
    case "topic":
      if (b.kind !== "channel") return problem("/topic works in a channel.");
      return arg ? send("TOPIC", b.name, arg) : send("TOPIC", b.name);
    case "close":
      if (b.kind === "channel" && b.joined) send("PART", b.name, "Leaving");
      if (b.kind !== "server") { state.buffers.delete(b.key); saveChannels(); show(serverBuffer()); }
      return;
    case "quit":
      state.quitting = true;
      localStorage.removeItem("salon.auto");
      send("QUIT", arg || "Leaving");
      return;
    case "away": return arg ? send("AWAY", arg) : send("AWAY");
    case "search": { // soju.im/search over every conversation you may read
      if (!arg) return problem("Usage: /search words");
      if (!state.caps.has("soju.im/search")) return problem("This server does not offer search.");
      const results = buffer("search", "search");
      results.log.replaceChildren();
      results.byId.clear();
      results.topic = `Messages with: ${arg}`;
      show(results);
      return send("SEARCH", `text=${escapeTag(arg)};limit=100`);
    }
    case "register": // an account named after the current nickname (draft/account-registration)
      if (!arg) return problem("Usage: /register password");
      state.registering = arg;
      return send("REGISTER", "*", "*", arg);
    case "raw": case "quote": return sendRaw(arg);
    case "help":
      info("/join #channel, /part, /msg nick text, /query nick, /me action, /nick name, " +
           "/topic text, /away [reason], /search words, /register password, /close, /quit, /raw LINE; " +
           "any other /command is sent as it is. Enter sends, Shift+Enter starts a new line; " +
           "a click on a message (or Enter on it in the log) reacts, replies or deletes.");
      return;
    default: // IRC syntax: /kick #chan nick :reason
      sendRaw(`${verb.toUpperCase()} ${arg}`.trim());
  }
}

function complete(input) {
  const b = state.current;
  const upto = input.value.slice(0, input.selectionStart);
  const m = /(\S+)$/.exec(upto);
  if (!m || !b) return;
  const start = fold(m[1]);
  const match = [...b.users.keys()].find((nick) => fold(nick).startsWith(start));
  if (!match) return;
  const suffix = upto.length === m[1].length ? ": " : " ";
  input.value = upto.slice(0, m.index) + match + suffix + input.value.slice(input.selectionStart);
}

// The input grows with its text, up to a third of the window (then it scrolls).
function grow(input) {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight + 2, Math.max(80, innerHeight / 3))}px`;
}

// ------------------------------------------------------------------ start

let workerAsked = false;

function installWorker() {
  if (workerAsked || !("serviceWorker" in navigator)) return;
  workerAsked = true;
  navigator.serviceWorker.register("/sw.js").catch(() => {});
}

// The channels of the login form (what was joined last time, or the server's default).
function wantChannels() {
  state.firstChannels = $("channels").value.split(/[\s,]+/).filter(Boolean)
    .map((c) => (isChannel(c) ? c : "#" + c));
}

function start() {
  state.serverName = document.title;
  setUp();
  const nickField = $("nick");
  nickField.value = localStorage.getItem("salon.nick") || "";
  // The field's value attribute is the server's default channel (server.default_channel,
  // filled in by the server that serves this page): the place every front door proposes.
  const channelsField = $("channels");
  channelsField.value = localStorage.getItem("salon.channels") || channelsField.defaultValue;
  (nickField.value ? $("password") : nickField).focus();

  const begin = () => {
    state.quitting = false;
    $("login-error").textContent = "";
    $("connect").disabled = true;
    connect();
  };
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.wanted = state.account = nickField.value.trim().replace(/\s+/g, "_");
    state.password = $("password").value;
    localStorage.setItem("salon.nick", state.wanted);
    wantChannels();
    if (!navigator.onLine) { $("login-error").textContent = "You are offline."; return; }
    begin();
  });
  // A nickname without a password that chatted here before comes back by itself (and
  // the app shows at once, offline too: the service worker keeps the page).
  if (localStorage.getItem("salon.auto") && nickField.value) {
    state.wanted = state.account = nickField.value;
    wantChannels();
    $("login-view").hidden = true;
    $("app").hidden = false;
    show(serverBuffer());
    if (navigator.onLine) begin();
    else status("Offline: waiting for the network.");
  }

  addEventListener("offline", () => status("Offline: waiting for the network."));
  addEventListener("online", () => {
    status("");
    if ($("app").hidden || state.quitting || connected()) return;
    state.retry = 0;
    if (!state.ws || state.ws.readyState !== WebSocket.CONNECTING) connect();
  });

  const input = $("input");
  $("say").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    const isCommand = text.startsWith("/") && !text.startsWith("//");
    if (!isCommand && (!connected() || !state.registered)) {
      problem("Not connected: the message is kept until the connection is back.");
      return;
    }
    state.sent.push(text);
    state.sentAt = state.sent.length;
    input.value = "";
    grow(input);
    if (isCommand) command(text);
    else say(text.startsWith("//") ? text.slice(1) : text);
  });
  input.addEventListener("input", () => { grow(input); typed(input); });
  input.addEventListener("keydown", (event) => {
    const single = !input.value.includes("\n");
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("say").requestSubmit();
    } else if (event.key === "Tab" && input.value) { event.preventDefault(); complete(input); }
    else if (event.key === "ArrowUp" && single && state.sentAt > 0) { input.value = state.sent[--state.sentAt]; event.preventDefault(); grow(input); }
    else if (event.key === "ArrowDown" && single && state.sentAt < state.sent.length) {
      input.value = state.sent[++state.sentAt] ?? "";
      event.preventDefault();
      grow(input);
    }
  });

  // Files: the attach button, a drop on the conversation, a paste in the input. Each link
  // is added to what is typed, to be sent with it (as salon chat's /upload does).
  link.send = send;
  const share = (list) => {
    if (!uploadUrl()) return;
    for (const file of list) {
      upload(file).then((url) => {
        input.value = input.value && !/\s$/.test(input.value) ? `${input.value} ${url}` : input.value + url;
        grow(input);
        input.focus();
      }, () => {});
    }
  };
  const picker = $("file");
  $("attach").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => { share([...picker.files]); picker.value = ""; });
  const chat = $("chat");
  const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  chat.addEventListener("dragover", (event) => {
    if (!carriesFiles(event) || !uploadUrl()) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    chat.classList.add("dropping");
  });
  chat.addEventListener("dragleave", (event) => { if (!chat.contains(event.relatedTarget)) chat.classList.remove("dropping"); });
  chat.addEventListener("drop", (event) => {
    chat.classList.remove("dropping");
    if (!carriesFiles(event) || !uploadUrl()) return;
    event.preventDefault();
    share([...event.dataTransfer.files]);
  });
  input.addEventListener("paste", (event) => {
    const pasted = [...(event.clipboardData?.files || [])];
    if (!pasted.length || !uploadUrl()) return;
    event.preventDefault();
    share(pasted);
  });
  const avatarFile = $("avatar-file");
  $("avatar-upload").addEventListener("click", () => avatarFile.click());
  avatarFile.addEventListener("change", () => { if (avatarFile.files[0]) uploadAvatar(avatarFile.files[0]); avatarFile.value = ""; });

  const settings = $("settings");
  $("open-settings").addEventListener("click", () => { renderSettings(); settings.showModal(); });
  $("close-settings").addEventListener("click", () => settings.close());
  // Asked only here, on the user's click: never when the page loads.
  $("notify-on").addEventListener("click", () => Notification.requestPermission().then(renderNotifications));
  $("save-profile").addEventListener("click", saveProfile);

  // An installed service worker is checked for an update at once; a first one waits until
  // 3 s after the first conversation showed (or 8 s), so that filling its cache (the
  // whole shell again) does not compete with the first visit's own requests.
  if (navigator.serviceWorker?.controller) installWorker();
  else setTimeout(installWorker, 8000);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
