"""The web client: a page, its ES modules (app.js, irc.js, state.js, view.js), a style
sheet, a service worker, a manifest and icons, served by the HTTP listener
(salon.net.websocket) as they are, no build step. The script speaks IRC over WebSocket to
the server that served it; see docs/web.md."""

from __future__ import annotations

import functools
import html
import re
from importlib import resources

# path -> (file, Content-Type)
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/irc.js": ("irc.js", "text/javascript; charset=utf-8"),
    "/state.js": ("state.js", "text/javascript; charset=utf-8"),
    "/view.js": ("view.js", "text/javascript; charset=utf-8"),
    "/files.js": ("files.js", "text/javascript; charset=utf-8"),
    "/sw.js": ("sw.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/manifest.webmanifest": ("manifest.webmanifest", "application/manifest+json"),
    "/icon-192.png": ("icon-192.png", "image/png"),
    "/icon-512.png": ("icon-512.png", "image/png"),
}

# What the page may do: its own script and style, WebSocket and fetches to its own origin
# ("'self'" covers ws: and wss: to the same host and port), its own manifest and service
# worker, images from itself and https (the avatars users set, draft/metadata-3), its own
# audio and video (previews of shared files), blob: URLs for the restricted files it fetched
# with a token, nothing else; and no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob: https:; media-src 'self' blob:; manifest-src 'self'; "
    "worker-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def policy(files_origin: str = "") -> str:
    """The page's policy; a file host on another origin (files.public_url, an origin
    already checked) may be reached too: uploads, and previews of its pictures, sound and
    video."""
    if not files_origin:
        return CONTENT_SECURITY_POLICY
    return (
        CONTENT_SECURITY_POLICY.replace("connect-src 'self'", f"connect-src 'self' {files_origin}")
        .replace("img-src 'self'", f"img-src 'self' {files_origin}")
        .replace("media-src 'self'", f"media-src 'self' {files_origin}")
    )


# The fields of index.html that page() fills in.
_FIELD = re.compile(r"\{\{(name|channel|ports)\}\}")


@functools.cache
def read(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def page(name: str, ports: list[tuple[str, int]], channel: str) -> bytes:
    """index.html for this server: its name, listening ports and default channel (the login
    form's proposal) filled in, HTML-escaped (quotes too: the channel is an attribute)."""
    fills = {
        "name": html.escape(name),
        "channel": html.escape(channel),
        "ports": "".join(f"<li>{html.escape(label)}: port {port}</li>" for label, port in ports),
    }
    # One pass: a value that holds "{{ports}}" (a channel may) is not filled in again.
    return _FIELD.sub(lambda m: fills[m.group(1)], read("index.html").decode()).encode()
