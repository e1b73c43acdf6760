// What salon's web client shows: the conversations, their lines, the member list, the
// drawers of the phone layout and the message actions. Everything received is put in the
// page with textContent, never as HTML; links are made only for http and https URLs.
// What a click asks of the server goes through `hooks`, which app.js fills in.

import { previews, release } from "./files.js";
import { stripFormatting } from "./irc.js";
import { $, el, fold, isMe, prefixes, state } from "./state.js";

// The most lines a conversation keeps in the page: older (or newer) ones are dropped and
// fetched again from the server's history when scrolled back to.
export const WINDOW = 300;
const NEAR = 300; // pixels from the top or bottom of the log at which more is fetched
const REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
const MESSAGE_KINDS = new Set(["message", "action", "notice"]);

export const hooks = {
  openQuery: () => {}, react: () => {}, redact: () => {}, markRead: () => {},
  loadOlder: () => {}, loadNewer: () => {}, jump: () => {}, toLatest: () => {}, notify: () => {},
};

// ------------------------------------------------------------------ buffers

export function buffer(name, kind) {
  // (keys no nickname or channel can have for the server's and the search's buffers)
  const key = kind === "server" ? "" : kind === "search" ? "\0search" : fold(name);
  let b = state.buffers.get(key);
  if (!b) {
    b = { key, name, kind, log: el("div", "lines"), users: new Map(), topic: "", unread: 0,
          mention: false, joined: false, byId: new Map(), eventIds: new Set(), typing: new Map(),
          button: el("button"), hasOlder: kind !== "search", hasLatest: true, loading: "",
          cursor: null, readAt: 0, focusId: "" };
    b.button.type = "button";
    b.button.addEventListener("click", () => { show(b); closeDrawers(); });
    state.buffers.set(key, b);
    renderBuffers();
  }
  return b;
}

export const serverBuffer = () => buffer("server", "server");

export function renderBuffers() {
  const nav = $("buffer-list");
  const order = { server: 0, channel: 1, query: 2, search: 3 };
  const list = [...state.buffers.values()].sort((a, b) =>
    order[a.kind] - order[b.kind] || fold(a.name).localeCompare(fold(b.name)));
  nav.replaceChildren(...list.map((b) => {
    b.button.className = [b === state.current && "current", b.unread && "unread",
                          b.mention && "mention"].filter(Boolean).join(" ");
    b.button.dataset.name = b.name;
    if (b === state.current) b.button.setAttribute("aria-current", "page");
    else b.button.removeAttribute("aria-current");
    const label = b.kind === "server" ? location.hostname || "server" : b.kind === "search" ? "Search" : b.name;
    b.button.replaceChildren(el("span", "name", label));
    if (b.unread && b !== state.current) {
      const count = el("span", "count", String(b.unread));
      count.setAttribute("aria-label", `${b.unread} unread`);
      b.button.append(count);
    }
    return b.button;
  }));
  renderBadge();
}

// The unread count in the title and in the favicon (a data: URL, which the CSP allows).
function renderBadge() {
  let unread = 0;
  for (const b of state.buffers.values()) unread += b === state.current && !document.hidden ? 0 : b.unread;
  document.title = (unread ? `(${unread}) ` : "") + (state.current ? state.current.name + " · " : "") + state.serverName;
  const badge = unread
    ? `%3Ccircle cx='12' cy='4' r='4' fill='%23d03020'/%3E`
    : "";
  const icon = document.querySelector("link[rel=icon]");
  const href = `data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='7' fill='%232f5d8a'/%3E${badge}%3C/svg%3E`;
  if (icon.getAttribute("href") !== href) icon.setAttribute("href", href);
  icon.dataset.unread = String(unread);
}

export function show(b) {
  const previous = state.current;
  const unread = b.unread;
  state.current = b;
  b.unread = 0;
  b.mention = false;
  const log = $("log");
  if (previous !== b) {
    for (const old of log.querySelectorAll(".unread-line")) old.remove();
    hideActions();
    log.replaceChildren(b.log);
    markUnread(b, unread);
    if (b.focusId && b.byId.has(b.focusId)) focusLine(b, b.focusId);
    else log.scrollTop = log.scrollHeight;
  }
  $("log").setAttribute("aria-busy", String(Boolean(b.loading)));
  renderTopic();
  renderUsers();
  renderBuffers();
  renderTyping();
  renderJump();
  if (!matchMedia("(pointer: coarse)").matches) $("input").focus();
  hooks.markRead(b);
}

// A "new messages" line above the first of `count` unread messages of b.
export function markUnread(b, count) {
  for (const old of b.log.querySelectorAll(".unread-line")) old.remove();
  if (!count) return;
  let line = b.log.lastElementChild;
  let first = null;
  for (; line && count; line = line.previousElementSibling) {
    if (MESSAGE_KINDS.has(line.dataset.kind) && !isMe(line.dataset.nick)) { first = line; count--; }
  }
  if (first) first.before(el("div", "unread-line", "New messages"));
}

export function renderTopic() {
  const b = state.current;
  const header = $("topic");
  header.replaceChildren(el("b", "", b.kind === "server" ? state.serverName : b.name));
  if (b.topic) header.append(linkified(stripFormatting(b.topic)));
  header.title = b.topic;
}

export function renderUsers() {
  const b = state.current;
  const list = $("user-list");
  const ranks = prefixes();
  const rank = (p) => (p ? ranks.indexOf(p[0]) : ranks.length);
  const users = [...b.users.entries()].sort(([a, pa], [c, pc]) => rank(pa) - rank(pc) || fold(a).localeCompare(fold(c)));
  $("user-count").textContent = b.kind === "channel" ? `${users.length} here` : "";
  list.replaceChildren(...users.map(([nick, p]) => {
    const item = el("li");
    const button = el("button", "user");
    button.type = "button";
    button.dataset.nick = nick;
    const meta = state.meta.get(fold(nick)) || {};
    button.append(...avatar(meta), (p ? p[0] : "") + (meta["display-name"] || nick));
    if (meta["display-name"]) button.append(" ", el("span", "nick", nick));
    const away = state.away.get(fold(nick));
    if (away !== undefined) {
      button.classList.add("away");
      button.title = `away: ${away}`;
      button.append(el("span", "visually-hidden", " (away)"));
    }
    button.addEventListener("click", () => { if (!isMe(nick)) hooks.openQuery(nick); closeDrawers(); });
    item.append(button);
    return item;
  }));
}

export function renderTyping() {
  const b = state.current;
  const now = Date.now();
  const who = b ? [...b.typing].filter(([, until]) => until > now).map(([nick]) => nick) : [];
  $("typing").textContent = who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…`
    : who.length < 4 ? `${who.join(", ")} are typing…` : "Several people are typing…";
}

function renderJump() {
  const b = state.current;
  const log = $("log");
  const away = log.scrollHeight - log.scrollTop - log.clientHeight > log.clientHeight;
  $("jump").hidden = !b || (b.hasLatest && !away);
}

// ------------------------------------------------------------------ lines

export function linkified(text) {
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

// Who said a line: the avatar and display name someone set (draft/metadata-3) and the
// nickname, which a click on it opens a conversation with.
function identity(nick) {
  const w = el("span", "who");
  w.dataset.nick = nick;
  w.style.setProperty("--hue", nickHue(nick));
  const meta = state.meta.get(fold(nick)) || {};
  const shown = avatar(meta);
  const name = meta["display-name"];
  if (name) {
    w.append(name, " ", el("span", "nick", nick));
    w.title = nick;
  } else {
    w.append(nick);
  }
  shown.push(w);
  return shown;
}

// An avatar (decorative: the name is beside it), shown from https URLs and the server's
// own, as the page's policy allows; none for another URL. A list of one image or none.
function avatar(meta) {
  let url;
  try {
    url = meta.avatar ? new URL(meta.avatar, location.href) : null;
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== "https:" && url.origin !== location.origin)) return [];
  const img = el("img", "avatar");
  img.alt = "";
  img.referrerPolicy = "no-referrer";
  img.loading = "lazy";
  img.src = url.href;
  img.addEventListener("error", () => img.remove()); // no broken picture for a dead link
  return [img];
}

// A user's display name or avatar changed: their lines on the page and the member list.
export function renderIdentity(nick) {
  for (const b of state.buffers.values()) {
    for (const w of b.log.querySelectorAll(".who")) {
      if (fold(w.dataset.nick) !== fold(nick)) continue;
      const line = w.parentElement;
      line.querySelector(".avatar")?.remove();
      w.replaceWith(...identity(nick));
    }
  }
  if (state.current && [...state.current.users.keys()].some((u) => fold(u) === fold(nick))) renderUsers();
}

// A nick's hue, the same in every session; app.css gives the lightness for the scheme.
function nickHue(nick) {
  let h = 0;
  for (const c of fold(nick)) h = (h * 31 + c.charCodeAt(0)) % 360;
  return String(h);
}

function timeOf(tags) {
  const t = tags && tags.time ? new Date(tags.time) : new Date();
  return isNaN(t) ? new Date() : t;
}

const atBottom = (log) => log.scrollHeight - log.scrollTop - log.clientHeight < 40;

function mentions(text) {
  if (!state.nick) return false;
  const nick = state.nick.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(^|\\W)${nick}(\\W|$)`, "i").test(text);
}

// Adds a line to a buffer, once per msgid: in time order (history arrives after live lines
// may have), or, for a page of older history (b.loading "before"), in the order received
// above what is there. A line whose msgid is "<id>-<n>" continues the message <id> (a
// multiline message as history stores it). Returns the line.
export function add(b, kind, who, text, tags = {}, history = false) {
  const msgid = tags.msgid;
  if (msgid) {
    const known = b.byId.get(msgid);
    if (known) return known;
    const part = /^(.+)-\d+$/.exec(msgid);
    const head = part && b.byId.get(part[1]);
    if (head && head.dataset.nick === (who || "")) {
      head.querySelector(".text").append("\n", linkified(stripFormatting(text)));
      b.byId.set(msgid, head);
      return head;
    }
  }
  const mine = isMe(who);
  if (!history && !b.hasLatest && MESSAGE_KINDS.has(kind)) {
    // The page shows older history: the newest lines come with the next page after it.
    if (!mine) { b.unread += 1; renderBuffers(); }
    return null;
  }
  const when = timeOf(tags);
  const line = el("div", "line " + kind);
  line.dataset.time = String(when.getTime());
  line.dataset.kind = kind;
  line.dataset.nick = who || "";
  if (msgid) { line.dataset.msgid = msgid; b.byId.set(msgid, line); }
  const today = when.toDateString() === new Date().toDateString();
  const day = today ? "" : when.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " ";
  const stamp = el("time", "", day + when.toTimeString().slice(0, 5));
  stamp.dateTime = when.toISOString();
  stamp.title = when.toLocaleString();
  line.append(stamp);
  if (who) line.append(...identity(who));
  const body = el("div", "body");
  const replyTo = tags["+draft/reply"] || tags["+reply"];
  if (replyTo) body.append(quote(b, replyTo));
  body.append(linkified(stripFormatting(text)));
  line.append(body);
  if (MESSAGE_KINDS.has(kind)) previews(line);
  const mention = !history && !mine && (kind === "message" || kind === "action") && mentions(text);
  if (mention) line.classList.add("mention");
  place(b, line, when.getTime());
  if (!history && MESSAGE_KINDS.has(kind) && !mine) {
    b.typing.delete(who);
    if (b === state.current) renderTyping();
    if (b !== state.current || document.hidden) {
      b.unread += 1;
      b.mention ||= mention || b.kind === "query";
      renderBuffers();
      if (document.hidden && (mention || b.kind === "query")) hooks.notify(b, who, text);
    }
  }
  if (b === state.current && !history && !document.hidden) hooks.markRead(b);
  return line;
}

function place(b, line, time) {
  const log = $("log");
  const shown = b === state.current;
  const bottom = shown && atBottom(log);
  if (b.loading === "before") {
    const height = log.scrollHeight;
    b.cursor ? b.cursor.after(line) : b.log.prepend(line);
    b.cursor = line;
    if (shown) log.scrollTop += log.scrollHeight - height; // the lines in view stay put
    if (b.log.childElementCount > WINDOW) trim(b, "end");
    return;
  }
  let after = b.log.lastElementChild;
  while (after && Number(after.dataset.time) > time) after = after.previousElementSibling;
  after ? after.after(line) : b.log.prepend(line);
  if (shown && (bottom || (isMe(line.dataset.nick) && !b.loading))) log.scrollTop = log.scrollHeight;
  if (b.log.childElementCount > WINDOW && (!shown || bottom || b.loading === "after")) trim(b, "start");
}

// Drops lines beyond the window from one end; what is dropped can be fetched again.
function trim(b, end) {
  const log = $("log");
  const shown = b === state.current;
  while (b.log.childElementCount > WINDOW) {
    const line = end === "start" ? b.log.firstElementChild : b.log.lastElementChild;
    const height = log.scrollHeight;
    forget(b, line);
    line.remove();
    if (shown && end === "start") log.scrollTop -= height - log.scrollHeight;
  }
  if (end === "start") b.hasOlder = true;
  else b.hasLatest = false;
  b.log.querySelector(".history-start")?.remove();
}

function forget(b, line) {
  release(line);
  for (const [id, known] of b.byId) if (known === line) b.byId.delete(id);
  if (b.cursor === line) b.cursor = null;
}

// What a buffer is fetching from its history ("latest", "before", "after", "around" or
// ""): the log is aria-busy meanwhile.
export function loading(b, what) {
  b.loading = what;
  if (b === state.current) $("log").setAttribute("aria-busy", String(Boolean(what)));
}

// Empties a buffer's log (before a jump into its history).
export function clear(b) {
  for (const line of b.log.children) release(line);
  b.log.replaceChildren();
  b.byId.clear();
  b.eventIds.clear();
  b.cursor = null;
}

export const info = (text, b = state.current || serverBuffer()) => add(b, "info", "", text);
export const problem = (text, b = state.current || serverBuffer()) => add(b, "error", "", text);

// Joins, parts and quits in a row make one line: "→ a, b joined · ← c left".
export function joinPart(b, verb, nick, reason, tags, history) {
  if (tags.msgid) {
    if (b.eventIds.has(tags.msgid)) return;
    b.eventIds.add(tags.msgid);
  }
  let line = b.log.lastElementChild;
  const time = timeOf(tags).getTime();
  if (!line || !line.classList.contains("joinpart") || b.loading === "before" || Number(line.dataset.time) > time) {
    line = add(b, "event joinpart", "", "", { time: tags.time }, true);
    line.runs = { joined: [], left: [] };
  }
  line.dataset.time = String(time);
  const runs = line.runs;
  const list = verb === "join" ? runs.joined : runs.left;
  if (!list.includes(nick)) list.push(nick);
  const said = [];
  if (runs.joined.length) said.push(`→ ${runs.joined.join(", ")} joined`);
  if (runs.left.length) said.push(`← ${runs.left.join(", ")} left`);
  if (runs.joined.length + runs.left.length === 1 && reason) said.push(reason);
  line.querySelector(".text").textContent = said.join(" · ");
  if (!history && b === state.current && atBottom($("log"))) $("log").scrollTop = $("log").scrollHeight;
}

function quote(b, msgid) {
  const q = el("button", "quote");
  q.type = "button";
  q.dataset.reply = msgid;
  const target = b.byId.get(msgid);
  if (target) {
    const text = target.querySelector(".text").textContent;
    q.append(el("span", "quoted-who", target.dataset.nick || "…"), ` ${text.slice(0, 140)}`);
  } else {
    q.append("in reply to an earlier message");
  }
  q.setAttribute("aria-label", `In reply to ${q.textContent}`);
  q.addEventListener("click", () => {
    if (b.byId.has(msgid)) focusLine(b, msgid);
    else hooks.jump(b.name, msgid);
  });
  return q;
}

// Scrolls to a line and marks it for a moment.
export function focusLine(b, msgid) {
  const line = b.byId.get(msgid);
  if (!line) return;
  b.focusId = "";
  line.scrollIntoView({ block: "center" });
  line.classList.add("found");
  setTimeout(() => line.classList.remove("found"), 2500);
  renderJump();
}

export function redacted(b, msgid) {
  const line = b.byId.get(msgid);
  if (!line) return;
  line.classList.add("redacted");
  release(line);
  line.querySelector(".body").replaceChildren(el("span", "text", "message deleted"));
  if ($("actions").parentElement === line) hideActions();
}

export function reaction(b, msgid, emoji, who) {
  const line = b.byId.get(msgid);
  if (!line || line.classList.contains("redacted")) return;
  let row = line.querySelector(".reactions");
  if (!row) { row = el("div", "reactions"); line.querySelector(".body").append(row); }
  let chip = [...row.children].find((c) => c.dataset.emoji === emoji);
  if (!chip) {
    chip = el("button", "reaction");
    chip.type = "button";
    chip.dataset.emoji = emoji;
    chip.who = [];
    chip.addEventListener("click", () => { if (!chip.who.some(isMe)) hooks.react(b, msgid, emoji); });
    row.append(chip);
  }
  if (chip.who.some((n) => fold(n) === fold(who))) return;
  chip.who.push(who);
  chip.replaceChildren(el("span", "", emoji), el("span", "n", String(chip.who.length)));
  chip.title = chip.who.join(", ");
  chip.setAttribute("aria-label", `${emoji} ${chip.who.length}: ${chip.title}`);
  chip.classList.toggle("mine", chip.who.some(isMe));
}

export function historyStart(b) {
  if (!b.log.querySelector(".history-start")) b.log.prepend(el("div", "history-start", "The beginning of the conversation"));
}

// ------------------------------------------------------------------ message actions

// One toolbar for the line chosen (a click on it, or Enter on the line selected with the
// arrow keys in the log): react, reply, delete one's own.
function showActions(line) {
  const b = state.current;
  const bar = $("actions");
  const msgid = line.dataset.msgid;
  if (!msgid || line.classList.contains("redacted") || !MESSAGE_KINDS.has(line.dataset.kind)) return;
  bar.replaceChildren();
  const button = (label, name, act) => {
    const x = el("button", "", label);
    x.type = "button";
    x.setAttribute("aria-label", name);
    x.title = name;
    x.addEventListener("click", (e) => { e.stopPropagation(); act(); });
    bar.append(x);
    return x;
  };
  for (const emoji of REACTIONS) button(emoji, `React ${emoji}`, () => { hooks.react(b, msgid, emoji); hideActions(); });
  button("↩", "Reply", () => {
    state.replyTo = { msgid, who: line.dataset.nick, text: line.querySelector(".text").textContent };
    renderReply();
    hideActions();
    $("input").focus();
  });
  if (isMe(line.dataset.nick)) button("🗑", "Delete", () => { hooks.redact(b, msgid); hideActions(); });
  line.append(bar);
  const room = line.getBoundingClientRect().top - $("log").getBoundingClientRect().top;
  bar.classList.toggle("below", room < 48); // (not cut off at the top of the log)
  bar.hidden = false;
}

export function hideActions() {
  const bar = $("actions");
  bar.hidden = true;
  document.body.append(bar);
}

export function renderReply() {
  const r = state.replyTo;
  $("replying").hidden = !r;
  $("replying-text").textContent = r ? `Replying to ${r.who}: ${r.text.slice(0, 100)}` : "";
}

// ------------------------------------------------------------------ drawers (phones)

const narrow = () => matchMedia("(max-width: 720px)").matches;

export function openDrawer(which) {
  const app = $("app");
  app.classList.remove("show-buffers", "show-users");
  app.classList.add(`show-${which}`);
  $("open-buffers").setAttribute("aria-expanded", String(which === "buffers"));
  $("open-users").setAttribute("aria-expanded", String(which === "users"));
  // The chat behind a drawer is out of reach (Tab, screen readers) until it closes.
  $("chat").inert = narrow();
  const panel = $(which);
  panel.querySelector("button")?.focus();
}

export function closeDrawers() {
  const app = $("app");
  const was = app.classList.contains("show-buffers") ? "open-buffers" : app.classList.contains("show-users") ? "open-users" : "";
  app.classList.remove("show-buffers", "show-users");
  $("chat").inert = false;
  $("open-buffers").setAttribute("aria-expanded", "false");
  $("open-users").setAttribute("aria-expanded", "false");
  if (was && narrow()) $(was).focus();
}

// A horizontal swipe: right opens the conversations (or closes the members), left the
// members (or closes the conversations).
function swipes() {
  let start = null;
  const app = $("app");
  app.addEventListener("touchstart", (e) => {
    start = e.touches.length === 1 ? { x: e.touches[0].clientX, y: e.touches[0].clientY } : null;
  }, { passive: true });
  // A sideways drag is ours: not a scroll of the page, nor the browser's "back" gesture.
  app.addEventListener("touchmove", (e) => {
    if (!start || !narrow() || e.touches.length !== 1) return;
    const dx = e.touches[0].clientX - start.x, dy = e.touches[0].clientY - start.y;
    if (Math.abs(dx) > 10 && Math.abs(dx) > Math.abs(dy) && e.cancelable) e.preventDefault();
  }, { passive: false });
  app.addEventListener("touchend", (e) => {
    if (!start || !narrow()) return;
    const t = e.changedTouches[0];
    const dx = t.clientX - start.x, dy = t.clientY - start.y;
    start = null;
    if (Math.abs(dx) < 60 || Math.abs(dx) < 2 * Math.abs(dy)) return;
    const open = app.classList.contains("show-buffers") ? "buffers" : app.classList.contains("show-users") ? "users" : "";
    if (dx > 0) open === "users" ? closeDrawers() : open || openDrawer("buffers");
    else open === "buffers" ? closeDrawers() : open || openDrawer("users");
  }, { passive: true });
}

// ------------------------------------------------------------------ the log's own events

export function setUp() {
  const log = $("log");
  $("open-buffers").addEventListener("click", () =>
    $("app").classList.contains("show-buffers") ? closeDrawers() : openDrawer("buffers"));
  $("open-users").addEventListener("click", () =>
    $("app").classList.contains("show-users") ? closeDrawers() : openDrawer("users"));
  $("scrim").addEventListener("click", closeDrawers);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { closeDrawers(); hideActions(); }
  });
  swipes();
  matchMedia("(max-width: 720px)").addEventListener("change", closeDrawers); // (no drawers when wide)
  $("jump").addEventListener("click", () => {
    const b = state.current;
    if (b.hasLatest) log.scrollTop = log.scrollHeight;
    else hooks.toLatest(b);
  });
  $("cancel-reply").addEventListener("click", () => { state.replyTo = null; renderReply(); $("input").focus(); });
  log.addEventListener("scroll", () => {
    const b = state.current;
    if (!b) return;
    if (log.scrollTop < NEAR && b.hasOlder && !b.loading) hooks.loadOlder(b);
    else if (log.scrollHeight - log.scrollTop - log.clientHeight < NEAR && !b.hasLatest && !b.loading) hooks.loadNewer(b);
    if (atBottom(log)) hooks.markRead(b);
    renderJump();
  }, { passive: true });
  log.addEventListener("click", (e) => {
    const t = e.target;
    if (t.closest("a, button")) return;
    const who = t.closest(".who");
    if (who) { if (!isMe(who.dataset.nick)) hooks.openQuery(who.dataset.nick); return; }
    const line = t.closest(".line");
    if (!line) return;
    if (line.dataset.found) { hooks.jump(line.dataset.target, line.dataset.found); return; }
    if ($("actions").parentElement === line) hideActions();
    else showActions(line);
  });
  // The keyboard: in the log, the arrows choose a line and Enter opens its actions (or,
  // for a search result, goes to it).
  log.addEventListener("keydown", (e) => {
    if (e.target !== log) return;
    const lines = [...state.current.log.querySelectorAll(".line[data-msgid]")];
    if (!lines.length) return;
    let i = lines.findIndex((l) => l.classList.contains("selected"));
    if (e.key === "ArrowUp" || e.key === "ArrowDown") {
      e.preventDefault();
      lines[i]?.classList.remove("selected");
      i = i < 0 ? lines.length - 1 : Math.max(0, Math.min(lines.length - 1, i + (e.key === "ArrowUp" ? -1 : 1)));
      lines[i].classList.add("selected");
      lines[i].scrollIntoView({ block: "nearest" });
    } else if ((e.key === "Enter" || e.key === " ") && i >= 0) {
      e.preventDefault();
      const line = lines[i];
      if (line.dataset.found) hooks.jump(line.dataset.target, line.dataset.found);
      else { showActions(line); $("actions").querySelector("button")?.focus(); }
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.current) { state.current.unread = 0; renderBuffers(); hooks.markRead(state.current); }
  });
  setInterval(renderTyping, 1000);
}
