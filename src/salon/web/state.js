// The state of salon's web client, shared by the view (view.js) and the protocol (app.js),
// and the name rules that depend on the server's ISUPPORT.

export const state = {
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
  retryTimer: 0,
  caps: new Set(),
  capsOffered: new Map(),
  isupport: { CHANTYPES: "#&", PREFIX: "(ov)@+", CASEMAPPING: "ascii" },
  buffers: new Map(), // folded name -> buffer
  current: null,
  batches: new Map(), // batch id -> {type, params, tags, lines}
  away: new Map(), // folded nick -> reason
  meta: new Map(), // folded nick -> {"display-name", avatar} (draft/metadata-3)
  firstChannels: [], // from the login form
  rejoin: null, // the channels joined when the connection was lost
  pendingShow: "", // the channel a /join asked for: shown once joined
  registering: "", // the password of a /register in flight
  replyTo: null, // {msgid, who, text} of the message the next one answers
  sent: [], // input history
  sentAt: 0,
  serverName: "",
};

export function fold(name) {
  let s = name.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (state.isupport.CASEMAPPING === "rfc1459") {
    s = s.replace(/[[\]\\~]/g, (c) => ({ "[": "{", "]": "}", "\\": "|", "~": "^" })[c]);
  }
  return s;
}

export const isMe = (nick) => Boolean(nick) && fold(nick) === fold(state.nick);
export const isChannel = (name) => name !== "" && state.isupport.CHANTYPES.includes(name[0]);

export const prefixes = () => {
  const m = /^\((.*)\)(.*)$/.exec(state.isupport.PREFIX);
  return m ? m[2] : "@+";
};

// "@#chan" (a message to the channel's operators) is shown in #chan.
export const bareChannel = (target) => {
  let i = 0;
  while (i < target.length - 1 && prefixes().includes(target[i]) && !isChannel(target[i])) i++;
  return target.slice(i);
};

export const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

export const $ = (id) => document.getElementById(id);
