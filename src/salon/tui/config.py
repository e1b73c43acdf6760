"""The client's small settings file: ``$XDG_CONFIG_HOME/salon/chat.toml``.

It keeps the nick asked for at first start, a default server, the channels to join, display
choices and the pinned fingerprints of self-signed server certificates (trust on first use).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from salon.errors import ConfigError


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "salon" / "chat.toml"


@dataclass
class ChatConfig:
    path: Path
    nick: str = ""
    server: str = ""  # "host[:port]"; empty = localhost:6667
    tls: bool = False
    channels: list[str] = field(default_factory=list)
    hide_joins: bool = False
    sasl_account: str = ""
    pins: dict[str, str] = field(default_factory=dict)  # "host:port" -> SHA-256 fingerprint

    def save(self) -> None:
        lines = ["# salon chat settings (written by salon chat; edit freely)"]
        if self.nick:
            lines.append(f"nick = {_quote(self.nick)}")
        if self.server:
            lines.append(f"server = {_quote(self.server)}")
        if self.tls:
            lines.append("tls = true")
        if self.channels:
            lines.append("channels = [" + ", ".join(_quote(c) for c in self.channels) + "]")
        if self.hide_joins:
            lines.append("hide_joins = true")
        if self.sasl_account:
            lines.append(f"sasl_account = {_quote(self.sasl_account)}")
        if self.pins:
            lines.append("")
            lines.append("[pins]  # certificates trusted on first use: host:port = SHA-256")
            lines += [f"{_quote(k)} = {_quote(v)}" for k, v in sorted(self.pins.items())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self.path)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def load(path: Path | None = None) -> ChatConfig:
    path = path or config_path()
    cfg = ChatConfig(path)
    if not path.exists():
        return cfg
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None

    def get(key: str, kind: type, default: object) -> object:
        value = data.get(key, default)
        if not isinstance(value, kind):
            raise ConfigError(f"{path}: {key} must be a {kind.__name__}")
        return value

    cfg.nick = str(get("nick", str, ""))
    cfg.server = str(get("server", str, ""))
    cfg.tls = bool(get("tls", bool, False))
    channels = get("channels", list, [])
    assert isinstance(channels, list)
    cfg.channels = [str(c) for c in channels]
    cfg.hide_joins = bool(get("hide_joins", bool, False))
    cfg.sasl_account = str(get("sasl_account", str, ""))
    pins = get("pins", dict, {})
    assert isinstance(pins, dict)
    cfg.pins = {str(k): str(v) for k, v in pins.items()}
    return cfg
