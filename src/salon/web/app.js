// salon's web client: IRC over WebSocket (IRCv3 "websocket", text.ircv3.net) to the
// server that served this page. Everything received is shown with textContent, never
// as HTML; links are made only for http and https URLs.
"use strict";

const CAPS_WANTED = [
  "message-tags", "server-time", "echo-message", "batch", "multi-prefix",
  "draft/chathistory", "away-notify", "soju.im/search",
];
const HISTORY_LINES = 100;
// A relayed line is at most 512 bytes with CR LF, the sender's prefix and the command; the
// server refuses longer ones (417). Until our own prefix is known (from our JOIN), a host of
// 63 bytes and a user of 10 are assumed.
const LINE_BYTES = 510;
const SASL_CHUNK = 400; // AUTHENTICATE payloads are sent in pieces of 400 bytes
const encoder = new TextEncoder();

// ------------------------------------------------------------------ the IRC codec

// The inverse, for a value sent in tag syntax (SEARCH attributes).
const escapeTag = (value) => value.replace(/[\\; \r\n]/g, (c) => ({ "\\": "\\\\", ";": "\\:", " ": "\\s", "\r": "\\r", "\n": "\\n" })[c]);

// message-tags: "\:" is ";", "\s" a space, "\\" a backslash, "\r" and "\n" CR and LF;
// a backslash before any other character is dropped, a trailing one too.
function unescapeTag(value) {
  return value.replace(/\\(.?)/gs, (_, c) => ({ ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" })[c] ?? c);
}

function parseLine(line) {
  const msg = { tags: {}, source: "", command: "", params: [] };
  let rest = line;
  const word = () => {
    const sp = rest.indexOf(" ");
    const w = sp < 0 ? rest : rest.slice(0, sp);
    rest = sp < 0 ? "" : rest.slice(sp + 1).replace(/^ +/, "");
    return w;
  };
  if (rest.startsWith("@")) {
    for (const item of word().slice(1).split(";")) {
      if (!item) continue;
      const eq = item.indexOf("=");
      if (eq < 0) msg.tags[item] = "";
      else msg.tags[item.slice(0, eq)] = unescapeTag(item.slice(eq + 1));
    }
  }
  if (rest.startsWith(":")) msg.source = word().slice(1);
  msg.command = word().toUpperCase();
  while (rest) {
    if (rest.startsWith(":")) { msg.params.push(rest.slice(1)); break; }
    msg.params.push(word());
  }
  return msg;
}

const nickOf = (source) => source.split("!")[0];

// One line from parameters: the last one as a trailing parameter when it must be. CR, LF
// and NUL cannot be sent (they would end the line): each becomes a space.
function formatLine(command, params) {
  const clean = params.map((p) => String(p).replace(/[\r\n\0]/g, " "));
  const last = clean.length - 1;
  if (last >= 0 && (clean[last] === "" || clean[last].includes(" ") || clean[last].startsWith(":"))) {
    clean[last] = ":" + clean[last];
  }
  return [command, ...clean].join(" ");
}

// Splits text into pieces of at most `limit` UTF-8 bytes (limit >= 4: one code point always
// fits), at a space when there is one; no piece is empty.
function splitText(text, limit) {
  const pieces = [];
  while (encoder.encode(text).length > limit) {
    let cut = 0, bytes = 0;
    for (const ch of text) {
      const size = encoder.encode(ch).length;
      if (bytes + size > limit) break;
      bytes += size;
      cut += ch.length;
    }
    const space = text.lastIndexOf(" ", cut);
    if (space > cut / 2) cut = space;
    if (cut > 0) pieces.push(text.slice(0, cut));
    text = text.slice(cut).replace(/^ /, "");
  }
  if (text) pieces.push(text);
  return pieces;
}

// mIRC formatting (bold, colours, italics...) is removed, not rendered.
const stripFormatting = (text) => text.replace(/\x03(\d{1,2}(,\d{1,2})?)?|\x04([0-9a-fA-F]{6}(,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]/g, "");

// ------------------------------------------------------------------ state

const state = {
  ws: null,
  nick: "", // the nickname in use
  wanted: "", // the nickname asked for (at login or with /nick): what a reconnect asks for
  account: "", // the nickname given with the password at login: the SASL account name
  password: "",
  prefix: "", // our own nick!user@host, from our JOIN
  versionAt: 0, // when CTCP VERSION was last answered
  registered: false,
  quitting: false,
  retry: 0,
  caps: new Set(),
  capsOffered: new Map(),
  isupport: { CHANTYPES: "#&", PREFIX: "(ov)@+", CASEMAPPING: "ascii" },
  buffers: new Map(), // folded name -> buffer
  current: null,
  batches: new Map(), // batch id -> {type, params}
  firstChannels: [], // from the login form
  rejoin: null, // the channels joined when the connection was lost
  pendingShow: "", // the channel a /join asked for: shown once joined
  registering: "", // the password of a /register in flight
  sent: [], // input history
  sentAt: 0,
};

function fold(name) {
  let s = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (state.isupport.CASEMAPPING === "rfc1459") {
    s = s.replace(/[[\]\\~]/g, (c) => ({ "[": "{", "]": "}", "\\": "|", "~": "^" })[c]);
  }
  return s;
}

const isChannel = (name) => name !== "" && state.isupport.CHANTYPES.includes(name[0]);
// "@#chan" (a message to the channel's operators) is shown in #chan.
const bareChannel = (target) => {
  let i = 0;
  while (i < target.length - 1 && prefixes().includes(target[i]) && !isChannel(target[i])) i++;
  return target.slice(i);
};
const prefixes = () => {
  const m = /^\((.*)\)(.*)$/.exec(state.isupport.PREFIX);
  return m ? m[2] : "@+";
};

// ------------------------------------------------------------------ buffers and rendering

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

function buffer(name, kind) {
  // (keys no nickname or channel can have for the server's and the search's buffers)
  const key = kind === "server" ? "" : kind === "search" ? "\0search" : fold(name);
  let b = state.buffers.get(key);
  if (!b) {
    b = { key, name, kind, log: el("div"), users: new Map(), topic: "", unread: 0, mention: false,
          joined: false, seen: new Set(), button: el("button") };
    b.button.type = "button";
    b.button.addEventListener("click", () => show(b));
    state.buffers.set(key, b);
    renderBuffers();
  }
  return b;
}

const serverBuffer = () => buffer("server", "server");

function renderBuffers() {
  const nav = document.getElementById("buffers");
  const order = { server: 0, channel: 1, query: 2, search: 3 };
  const list = [...state.buffers.values()].sort((a, b) =>
    order[a.kind] - order[b.kind] || fold(a.name).localeCompare(fold(b.name)));
  nav.replaceChildren(...list.map((b) => {
    b.button.className = [b === state.current && "current", b.unread && "unread",
                          b.mention && "mention"].filter(Boolean).join(" ");
    b.button.dataset.name = b.name;
    const label = b.kind === "server" ? location.hostname || "server" : b.kind === "search" ? "Search" : b.name;
    b.button.replaceChildren(el("span", "name", label));
    if (b.unread && b !== state.current) b.button.append(el("span", "count", String(b.unread)));
    return b.button;
  }));
  const unread = list.reduce((n, b) => n + (b === state.current ? 0 : b.unread), 0);
  document.title = (unread ? `(${unread}) ` : "") + (state.current ? state.current.name + " · " : "") + serverName;
}

function show(b) {
  state.current = b;
  b.unread = 0;
  b.mention = false;
  const log = document.getElementById("log");
  log.replaceChildren(b.log);
  log.scrollTop = log.scrollHeight;
  renderTopic();
  renderUsers();
  renderBuffers();
  document.getElementById("input").focus();
}

function renderTopic() {
  const b = state.current;
  const header = document.getElementById("topic");
  header.replaceChildren(el("b", "", b.kind === "server" ? "" : b.name));
  if (b.topic) header.append(linkified(stripFormatting(b.topic)));
  header.title = b.topic;
}

function renderUsers() {
  const b = state.current;
  const aside = document.getElementById("users");
  const ranks = prefixes();
  const rank = (p) => (p ? ranks.indexOf(p[0]) : ranks.length);
  const users = [...b.users.entries()].sort(([a, pa], [c, pc]) => rank(pa) - rank(pc) || fold(a).localeCompare(fold(c)));
  aside.replaceChildren(...users.map(([nick, p]) => el("div", "", (p ? p[0] : "") + nick)));
}

function linkified(text) {
  const span = el("span", "text");
  let last = 0;
  for (const m of text.matchAll(/\bhttps?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]'}]/g)) {
    span.append(text.slice(last, m.index));
    const a = el("a", "", m[0]);
    a.href = m[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    span.append(a);
    last = m.index + m[0].length;
  }
  span.append(text.slice(last));
  return span;
}

function nickColour(nick) {
  let h = 0;
  for (const c of fold(nick)) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 55%, 45%)`;
}

function timeOf(tags) {
  const t = tags && tags.time ? new Date(tags.time) : new Date();
  return isNaN(t) ? new Date() : t;
}

// Adds a line to a buffer, in time order (history arrives after live lines may have),
// once per msgid.
function add(b, kind, who, text, tags = {}, history = false) {
  if (tags.msgid) {
    if (b.seen.has(tags.msgid)) return;
    b.seen.add(tags.msgid);
  }
  const when = timeOf(tags);
  const line = el("div", "line " + kind);
  line.dataset.time = String(when.getTime());
  const today = when.toDateString() === new Date().toDateString();
  const day = today ? "" : when.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " ";
  const stamp = el("time", "", day + when.toTimeString().slice(0, 5));
  stamp.dateTime = when.toISOString();
  stamp.title = when.toLocaleString();
  line.append(stamp);
  if (who) {
    const w = el("span", "who", who);
    w.style.color = nickColour(who);
    line.append(w);
  }
  line.append(linkified(stripFormatting(text)));
  const mine = who && fold(who) === fold(state.nick);
  const mention = !history && !mine && state.nick && (kind === "message" || kind === "action") &&
    new RegExp(`(^|\\W)${state.nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(\\W|$)`, "i").test(text);
  if (mention) line.classList.add("mention");
  const log = document.getElementById("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  let after = b.log.lastElementChild;
  while (after && Number(after.dataset.time) > when.getTime()) after = after.previousElementSibling;
  after ? after.after(line) : b.log.prepend(line);
  if (b === state.current) {
    if (atBottom || mine) log.scrollTop = log.scrollHeight;
  } else if (!history && (kind === "message" || kind === "action" || kind === "notice")) {
    b.unread += 1;
    b.mention ||= mention || b.kind === "query";
    renderBuffers();
  }
}

const info = (text, b = state.current || serverBuffer()) => add(b, "info", "", text);
const problem = (text, b = state.current || serverBuffer()) => add(b, "error", "", text);

// ------------------------------------------------------------------ the connection

const connected = () => Boolean(state.ws && state.ws.readyState === WebSocket.OPEN);

// A line as typed (/raw, or a command the client does not know), CR, LF and NUL as spaces.
function sendRaw(line) {
  if (connected()) state.ws.send(line.replace(/[\r\n\0]/g, " "));
}

function send(command, ...params) {
  if (connected()) state.ws.send(formatLine(command, params));
}

function connect() {
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
    for (const b of state.buffers.values()) { b.users.clear(); b.joined = false; }
    if (state.current) renderUsers();
    if (state.quitting) return;
    if (!state.registered && document.getElementById("app").hidden) {
      loginFailed(document.getElementById("login-error").textContent || "Could not connect.");
      return;
    }
    const wait = Math.min(30, 2 ** state.retry++);
    problem(`Disconnected. Reconnecting in ${wait} s…`, serverBuffer());
    setTimeout(() => { if (!state.quitting) connect(); }, wait * 1000);
  };
}

// A login refused: on the form the first time; once chatting (a reconnect), in the server's
// buffer, and the reconnects go on.
function loginFailed(reason) {
  if (!document.getElementById("app").hidden) {
    problem(reason, serverBuffer());
    if (state.ws) state.ws.close();
    return;
  }
  state.quitting = true;
  if (state.ws) state.ws.close();
  state.ws = null;
  document.getElementById("login-error").textContent = reason;
  document.getElementById("connect").disabled = false;
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
  const wanted = state.rejoin || state.firstChannels;
  if (wanted.length) send("JOIN", wanted.join(","));
  if (state.caps.has("draft/chathistory")) {
    const month = new Date(Date.now() - 30 * 86400e3).toISOString();
    send("CHATHISTORY", "TARGETS", `timestamp=${month}`, `timestamp=${new Date(Date.now() + 60e3).toISOString()}`, "50");
  }
}

function fetchHistory(b) {
  if (state.caps.has("draft/chathistory")) send("CHATHISTORY", "LATEST", b.name, "*", String(HISTORY_LINES));
}

// ------------------------------------------------------------------ what the server sends

function receive(msg) {
  const p = msg.params;
  const batch = msg.tags.batch ? state.batches.get(msg.tags.batch) : undefined;
  const history = Boolean(batch && batch.type === "chathistory");
  switch (msg.command) {
    case "PING": send("PONG", ...p); return;
    case "CAP": return cap(p);
    case "AUTHENTICATE":
      if (p[0] === "+") {
        const bytes = encoder.encode(`\0${state.account}\0${state.password}`);
        const data = btoa(String.fromCharCode(...bytes));
        for (let i = 0; i < data.length; i += SASL_CHUNK) send("AUTHENTICATE", data.slice(i, i + SASL_CHUNK));
        if (data.length % SASL_CHUNK === 0) send("AUTHENTICATE", "+");
      }
      return;
    case "BATCH": {
      const id = p[0].slice(1);
      if (p[0][0] === "+") {
        state.batches.set(id, { type: p[1], params: p.slice(2) });
      } else {
        const ended = state.batches.get(id);
        state.batches.delete(id);
        if (ended && ended.type === "soju.im/search" && !ended.found) info("No messages found.", buffer("search", "search"));
      }
      return;
    }
    case "PRIVMSG": case "NOTICE": return message(msg, history, batch);
    case "JOIN": return joined(msg);
    case "PART": {
      const mine = fold(nickOf(msg.source)) === fold(state.nick);
      const b = mine ? state.buffers.get(fold(p[0])) : buffer(p[0], "channel");
      if (!b) { saveChannels(); return; } // closed with /close
      if (fold(nickOf(msg.source)) === fold(state.nick)) {
        b.joined = false;
        b.users.clear();
        saveChannels();
        add(b, "event", "", "You left.");
      }
      else { b.users.delete(nickOf(msg.source)); add(b, "event", "", `← ${nickOf(msg.source)} left${p[1] ? ": " + p[1] : ""}`, msg.tags); }
      if (b === state.current) renderUsers();
      return;
    }
    case "KICK": {
      const b = state.buffers.get(fold(p[0]));
      if (!b) return;
      b.users.delete(p[1]);
      add(b, "event", "", `${p[1]} was kicked by ${nickOf(msg.source)}${p[2] ? ": " + p[2] : ""}`, msg.tags);
      if (fold(p[1]) === fold(state.nick)) { b.joined = false; b.users.clear(); saveChannels(); }
      if (b === state.current) renderUsers();
      return;
    }
    case "QUIT": {
      const nick = nickOf(msg.source);
      for (const b of state.buffers.values()) {
        if (b.users.delete(nick)) add(b, "event", "", `← ${nick} quit${p[0] ? ": " + p[0] : ""}`, msg.tags);
      }
      if (state.current) renderUsers();
      return;
    }
    case "NICK": {
      const old = nickOf(msg.source), nick = p[0];
      if (fold(old) === fold(state.nick)) {
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
      for (const b of state.buffers.values()) {
        if (b.users.has(old)) {
          b.users.set(nick, b.users.get(old));
          b.users.delete(old);
          add(b, "event", "", `${old} is now ${nick}`, msg.tags);
        }
      }
      if (state.current) renderUsers();
      return;
    }
    case "TOPIC": {
      const b = buffer(p[0], "channel");
      b.topic = p[1] || "";
      add(b, "event", "", `${nickOf(msg.source)} set the topic: ${b.topic}`, msg.tags);
      if (b === state.current) renderTopic();
      return;
    }
    case "MODE":
      if (isChannel(p[0])) {
        const b = buffer(p[0], "channel");
        add(b, "event", "", `${nickOf(msg.source)} sets mode ${p.slice(1).join(" ")}`, msg.tags);
        applyModes(b, p[1] || "", p.slice(2));
      }
      return;
    case "ERROR": problem(p[0] || "The server closed the connection.", serverBuffer());
      if (!state.registered) document.getElementById("login-error").textContent = p[0] || "";
      return;
    case "FAIL": case "WARN": case "NOTE":
      if (p[0] === "CHATHISTORY" && p[1] === "INVALID_TARGET") return;
      (msg.command === "NOTE" ? info : problem)(`${p[0]} ${p[1]}: ${p[p.length - 1]}`);
      return;
    case "AWAY": return;
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
  let b;
  if (batch && batch.type === "soju.im/search") {
    // A search result: shown in the search buffer, with the conversation it comes from.
    const mineLine = fold(from) === fold(state.nick);
    const where = isChannel(bareChannel(target)) ? bareChannel(target) : mineLine ? target : from;
    batch.found = (batch.found || 0) + 1;
    const results = buffer("search", "search");
    const line = kind === "action" ? `* ${from} ${text}` : text;
    add(results, kind, kind === "action" ? "" : from, `[${where}] ${line}`, msg.tags, true);
    return;
  }
  if (!msg.source.includes("!") || (notice && !state.registered)) b = serverBuffer(); // the server's own
  else if (isChannel(bareChannel(target))) b = buffer(bareChannel(target), "channel");
  else if (history && batch.params[0]) {
    b = buffer(batch.params[0], "query"); // the conversation asked for: my lines too, whatever my nick was
  } else {
    const other = fold(from) === fold(state.nick) ? target : from; // echo of my own
    const fresh = !state.buffers.has(fold(other));
    b = buffer(other, "query");
    if (fresh) fetchHistory(b); // what was said before this message
  }
  if (kind === "action") add(b, kind, "", `* ${from} ${text}`, msg.tags, history);
  else add(b, kind, from, text, msg.tags, history);
}

function joined(msg) {
  const nick = nickOf(msg.source);
  const b = buffer(msg.params[0], "channel");
  if (fold(nick) === fold(state.nick)) {
    state.prefix = msg.source;
    b.joined = true;
    b.name = msg.params[0];
    b.users.clear();
    saveChannels();
    if (!state.current || state.current.kind === "server" || state.pendingShow === fold(b.name)) {
      state.pendingShow = "";
      show(b);
    }
    fetchHistory(b);
  } else {
    b.users.set(nick, "");
    add(b, "event", "", `→ ${nick} joined`, msg.tags);
    if (b === state.current) renderUsers();
  }
}

function numeric(msg) {
  const p = msg.params.slice(1); // the first is my nick
  const text = p[p.length - 1] || "";
  switch (msg.command) {
    case "001":
      state.registered = true;
      state.retry = 0;
      state.nick = msg.params[0];
      document.getElementById("login").hidden = true;
      document.getElementById("app").hidden = false;
      if (!state.current) show(serverBuffer());
      info(text, serverBuffer());
      joinSaved();
      return;
    case "005":
      for (const token of p.slice(0, -1)) {
        const eq = token.indexOf("=");
        state.isupport[eq < 0 ? token : token.slice(0, eq)] = eq < 0 ? "" : token.slice(eq + 1);
      }
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
    case "366": { const b = buffer(p[0], "channel"); b.namesFresh = false; if (b === state.current) renderUsers(); return; }
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
  return LINE_BYTES - encoder.encode(`:${prefix} PRIVMSG ${target} :`).length;
}

function say(text, action = false) {
  const b = state.current;
  if (!b || (b.kind !== "channel" && b.kind !== "query")) {
    problem("Type /join #channel or /msg nick text first.");
    return;
  }
  const budget = textBudget(b.name) - (action ? 9 : 0); // "\x01ACTION " and "\x01"
  if (budget < 32) { problem("That name is too long to send messages to."); return; }
  for (const line of text.split(/\r?\n/)) {
    for (const piece of splitText(line, budget)) {
      send("PRIVMSG", b.name, action ? `\x01ACTION ${piece}\x01` : piece);
      if (state.caps.has("echo-message")) continue;
      if (action) add(b, "action", "", `* ${state.nick} ${piece}`);
      else add(b, "message", state.nick, piece);
    }
  }
}

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
      const q = isChannel(words[0]) ? buffer(words[0], "channel") : buffer(words[0], "query");
      show(q);
      if (!isChannel(words[0])) fetchHistory(q);
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
      send("QUIT", arg || "Leaving");
      return;
    case "away": return arg ? send("AWAY", arg) : send("AWAY");
    case "search": { // soju.im/search over every conversation you may read
      if (!arg) return problem("Usage: /search words");
      if (!state.caps.has("soju.im/search")) return problem("This server does not offer search.");
      const results = buffer("search", "search");
      results.log.replaceChildren();
      results.seen.clear();
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
           "any other /command is sent as it is.");
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

// ------------------------------------------------------------------ start

let serverName = document.title;

document.addEventListener("DOMContentLoaded", () => {
  serverName = document.title;
  const nickField = document.getElementById("nick");
  nickField.value = localStorage.getItem("salon.nick") || "";
  // The field's value attribute is the server's default channel (server.default_channel,
  // filled in by the server that serves this page): the place every front door proposes.
  const channelsField = document.getElementById("channels");
  channelsField.value = localStorage.getItem("salon.channels") || channelsField.defaultValue;
  (nickField.value ? document.getElementById("password") : nickField).focus();

  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    state.wanted = state.account = nickField.value.trim().replace(/\s+/g, "_");
    state.password = document.getElementById("password").value;
    localStorage.setItem("salon.nick", state.wanted);
    state.firstChannels = document.getElementById("channels").value.split(/[\s,]+/).filter(Boolean)
      .map((c) => (isChannel(c) ? c : "#" + c));
    state.quitting = false;
    document.getElementById("login-error").textContent = "";
    document.getElementById("connect").disabled = true;
    connect();
  });

  const input = document.getElementById("input");
  document.getElementById("say").addEventListener("submit", (event) => {
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
    if (isCommand) command(text);
    else say(text.startsWith("//") ? text.slice(1) : text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Tab") { event.preventDefault(); complete(input); }
    else if (event.key === "ArrowUp" && state.sentAt > 0) { input.value = state.sent[--state.sentAt]; event.preventDefault(); }
    else if (event.key === "ArrowDown" && state.sentAt < state.sent.length) {
      input.value = state.sent[++state.sentAt] ?? "";
      event.preventDefault();
    }
  });
});
