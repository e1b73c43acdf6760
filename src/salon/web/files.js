// File sharing in salon's web client (soju.im/FILEHOST, docs/files.md): uploads from the
// attach button, a drop or a paste, each with a progress bar and a cancel button, and
// previews of this server's images, audio and video. The credentials are a Bearer token
// from TOKEN GENERATE FILEHOST (draft/authtoken), sent as a header, never a cookie.

import { $, el, state } from "./state.js";

// How long a token is used for previews: the server keeps one 10 minutes.
const TOKEN_FOR = 9 * 60e3;
const TOKEN_WAIT = 15e3; // the server's answer to TOKEN GENERATE, at most
// A restricted file (one a link alone does not open) is fetched whole with the token to be
// shown; above this size it stays a link.
const FETCH_MAX = 16 * 1048576;
const PREVIEWS_PER_LINE = 3;
const KINDS = {
  png: "img", jpg: "img", gif: "img", webp: "img", avif: "img",
  mp3: "audio", ogg: "audio", flac: "audio", wav: "audio", m4a: "audio",
  mp4: "video", webm: "video", ogv: "video",
};
// The path of a file of salon's host (a 128-bit id in base32, then the cosmetic name).
const FILE_PATH = /^\/f\/[a-z2-7]{26}\/([^/]+)$/;

// What app.js gives: how to send a line (set at start).
export const link = { send: () => {} };

// ------------------------------------------------------------------ sizes and words

// A size for people, as the server says it ("50 MB", "980 kB"; powers of 1024).
export function sizeText(n) {
  for (const [unit, scale] of [["GB", 2 ** 30], ["MB", 2 ** 20], ["kB", 2 ** 10]]) {
    if (n >= scale) return `${(n / scale).toFixed(1).replace(/\.0$/, "")} ${unit}`;
  }
  return `${n} bytes`;
}

// The upload URL the server gave (005 soju.im/FILEHOST or draft/FILEHOST), or "".
export const uploadUrl = () => state.isupport["soju.im/FILEHOST"] || state.isupport["draft/FILEHOST"] || "";

// ------------------------------------------------------------------ tokens

const waiting = []; // {resolve, reject, timer} in the order the requests were sent
let cached = null; // {token, at, ws}

export function tokenArrived(token) {
  const w = waiting.shift();
  if (!w) return;
  clearTimeout(w.timer);
  w.resolve(token);
}

export function tokenRefused(text) {
  const w = waiting.shift();
  if (!w) return;
  clearTimeout(w.timer);
  w.reject(new Error(text));
}

function newToken() {
  return new Promise((resolve, reject) => {
    const w = { resolve, reject, timer: 0 };
    w.timer = setTimeout(() => {
      waiting.splice(waiting.indexOf(w), 1);
      reject(new Error("The server did not answer: try again"));
    }, TOKEN_WAIT);
    waiting.push(w);
    link.send("TOKEN", "GENERATE", "FILEHOST");
  });
}

// A token for reading restricted files, kept a while (one request at a time); none for a
// guest.
function readToken() {
  if (!state.account || !state.password) return Promise.resolve("");
  if (cached && cached.ws === state.ws && Date.now() - cached.at < TOKEN_FOR) return cached.token;
  const ws = state.ws;
  const token = newToken().catch(() => "");
  cached = { token, at: Date.now(), ws };
  return token;
}

// ------------------------------------------------------------------ uploads

let maxSize = 0; // the server's Upload-Limit, once asked for (OPTIONS /upload)

async function limit(url) {
  if (maxSize) return maxSize;
  try {
    const answer = await fetch(url, { method: "OPTIONS", credentials: "omit" });
    const m = /maxsize=(\d+)/.exec(answer.headers.get("Upload-Limit") || "");
    if (m) maxSize = Number(m[1]);
  } catch {
    // (the POST says it again, in its refusal)
  }
  return maxSize;
}

// RFC 8187's attr-char: what encodeURIComponent leaves but the header may not carry.
const attrChars = (name) => encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

// What a refusal says, in plain words (the server's text says what, the status how).
function refusal(xhr, name) {
  const said = (xhr.responseText || "").trim().split("\n")[0];
  const m = /maxsize=(\d+)/.exec(xhr.getResponseHeader("Upload-Limit") || "");
  switch (xhr.status) {
    case 0: return "The connection to the server was lost";
    case 413: return m ? `${name} is over ${sizeText(Number(m[1]))}, the largest file this server takes` : said;
    case 507: return said.replace(/^Over quota: /, "Not enough room: quota: ");
    case 429: {
      const wait = xhr.getResponseHeader("Retry-After");
      return said || `Too many uploads${wait ? `: try again in ${wait} seconds` : ""}`;
    }
    default: return said || `The server refused the file (${xhr.status})`;
  }
}

// Uploads a file, showing its progress (with a cancel button) in `list`. Resolves with the
// file's URL; rejects with an Error whose message says why in plain words ("" when the
// user cancelled).
export function upload(file, list = $("uploads")) {
  const name = file.name || "file";
  const item = el("li", "upload");
  const label = el("span", "upload-name", name);
  const bar = el("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `Sending ${name}`);
  const cancel = el("button", "icon", "✕");
  cancel.type = "button";
  cancel.setAttribute("aria-label", `Cancel sending ${name}`);
  const said = el("span", "upload-state", "");
  item.append(label, bar, said, cancel);
  list.append(item);
  list.hidden = false;
  const done = () => { item.remove(); list.hidden = !list.childElementCount; };
  const failed = (text) => {
    bar.remove();
    item.classList.add("failed");
    said.textContent = text;
    said.setAttribute("role", "alert");
    cancel.setAttribute("aria-label", `Dismiss: ${text}`);
    cancel.onclick = done;
    return new Error(text);
  };
  return new Promise((resolve, reject) => {
    let xhr = null;
    let cancelled = false;
    cancel.onclick = () => { cancelled = true; if (xhr) xhr.abort(); done(); reject(new Error("")); };
    (async () => {
      const url = uploadUrl();
      if (!url) throw failed("This server does not host files");
      const max = await limit(url);
      if (max && file.size > max) throw failed(`${name} is over ${sizeText(max)}, the largest file this server takes`);
      let token;
      try {
        token = await newToken();
      } catch (error) {
        throw failed(error.message);
      }
      if (cancelled) return;
      xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.setRequestHeader("Content-Disposition", `attachment; filename*=UTF-8''${attrChars(name)}`);
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        bar.value = e.loaded / e.total;
        said.textContent = `${sizeText(e.loaded)} of ${sizeText(e.total)}`;
      };
      xhr.onload = () => {
        let answer = null;
        try { answer = xhr.status === 201 ? JSON.parse(xhr.responseText) : null; } catch { answer = null; }
        const where = xhr.getResponseHeader("Location") || answer?.url;
        if (xhr.status === 201 && where) { done(); resolve(where); } else reject(failed(refusal(xhr, name)));
      };
      xhr.onerror = () => reject(failed(refusal(xhr, name)));
      xhr.send(file);
    })().catch(reject);
  });
}

// ------------------------------------------------------------------ previews

// The kind of preview a link gets: "img", "audio", "video", or "" (a plain link). Only
// this server's file URLs (the page's origin, or where its FILEHOST uploads) are previewed.
export function previewKind(href) {
  let url, host;
  try { url = new URL(href); host = new URL(uploadUrl() || location.href).origin; } catch { return ""; }
  if ((url.origin !== location.origin && url.origin !== host) || url.search || url.hash) return "";
  const m = FILE_PATH.exec(url.pathname);
  if (!m) return "";
  const ext = /\.([a-z0-9]+)$/i.exec(m[1]);
  return (ext && KINDS[ext[1].toLowerCase()]) || "";
}

// Previews under a line's text for its links to this server's files. A file the link alone
// opens is loaded by the element itself (a video seeks, the cache serves it again); a
// restricted one is fetched with a token, when we may read it, and shown from a blob: URL
// (freed with the line: release()).
export function previews(line) {
  const links = [...line.querySelectorAll(".body > .text a")].filter((a) => previewKind(a.href));
  for (const a of links.slice(0, PREVIEWS_PER_LINE)) show(line, a, previewKind(a.href));
}

async function show(line, a, kind) {
  const href = a.href;
  const box = el("div", "preview");
  a.closest(".body").append(box);
  const put = (src) => {
    const media = el(kind);
    if (kind === "img") {
      media.alt = a.textContent.split("/").pop();
      media.loading = "lazy";
    } else {
      media.controls = true;
      media.preload = "metadata";
      media.setAttribute("aria-label", decodeURIComponent(href.split("/").pop()));
    }
    media.addEventListener("error", () => box.remove());
    media.src = src;
    box.append(media);
  };
  try {
    // (With a token at once: a restricted file's 401 would be an error in the console.)
    const token = await readToken();
    const auth = token ? { Authorization: `Bearer ${token}` } : {};
    let answer = await fetch(href, { method: "HEAD", credentials: "omit", headers: auth });
    if (!answer.ok) { box.remove(); return; }
    if (!token || /\bpublic\b/.test(answer.headers.get("Cache-Control") || "")) { put(href); return; }
    if (Number(answer.headers.get("Content-Length")) > FETCH_MAX) { box.remove(); return; }
    answer = await fetch(href, { credentials: "omit", headers: auth });
    if (!answer.ok) { box.remove(); return; }
    const blob = await answer.blob();
    if (!line.parentElement) return; // dropped from the window meanwhile
    const url = URL.createObjectURL(blob);
    box.dataset.blob = url;
    put(url);
  } catch {
    box.remove();
  }
}

// A line leaves the page: the blob: URLs of its previews are freed.
export function release(line) {
  for (const box of line.querySelectorAll(".preview[data-blob]")) URL.revokeObjectURL(box.dataset.blob);
}
