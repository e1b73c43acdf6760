// The IRC line codec of salon's web client: parsing, formatting, tag escapes and the
// splitting of long texts. No DOM here: tests import this module into a page as it is.

const encoder = new TextEncoder();

// A value sent in tag syntax (client tags, SEARCH attributes): the inverse of unescapeTag.
export const escapeTag = (value) => value.replace(/[\\; \r\n]/g, (c) => ({ "\\": "\\\\", ";": "\\:", " ": "\\s", "\r": "\\r", "\n": "\\n" })[c]);

// message-tags: "\:" is ";", "\s" a space, "\\" a backslash, "\r" and "\n" CR and LF;
// a backslash before any other character is dropped, a trailing one too.
export function unescapeTag(value) {
  return value.replace(/\\(.?)/gs, (_, c) => ({ ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" })[c] ?? c);
}

export function parseLine(line) {
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

export const nickOf = (source) => source.split("!")[0];

// One line from parameters: the last one as a trailing parameter when it must be. CR, LF
// and NUL cannot be sent (they would end the line): each becomes a space.
export function formatLine(command, params) {
  const clean = params.map((p) => String(p).replace(/[\r\n\0]/g, " "));
  const last = clean.length - 1;
  if (last >= 0 && (clean[last] === "" || clean[last].includes(" ") || clean[last].startsWith(":"))) {
    clean[last] = ":" + clean[last];
  }
  return [command, ...clean].join(" ");
}

// Splits text into pieces of at most `limit` UTF-8 bytes (limit >= 4: one code point always
// fits), at a space when there is one; no piece is empty.
export function splitText(text, limit) {
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
export const stripFormatting = (text) => text.replace(/\x03(\d{1,2}(,\d{1,2})?)?|\x04([0-9a-fA-F]{6}(,[0-9a-fA-F]{6})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]/g, "");

// A line with tags: "@a=b;c COMMAND params" (client tags start with "+").
export function formatTagged(tags, command, params) {
  const items = Object.entries(tags).map(([k, v]) => (v === "" ? k : `${k}=${escapeTag(v)}`));
  const line = formatLine(command, params);
  return items.length ? `@${items.join(";")} ${line}` : line;
}

export const byteLength = (text) => encoder.encode(text).length;
