"""The explorer's HTTP server: the page, its script and style, and a JSON API, on 127.0.0.1 only.

    GET  /                 the page (a Jinja2 template)
    GET  /static/explore.js, /static/explore.css
    GET  /api/info         the models: classes, stages (names, shapes, receptive fields), methods
    POST /api/predict      {"image", "model"?, "top_k"?, "maps"?}: top-k classes, the model's input, stage maps
    POST /api/unit         {"image", "model"?, "layer", "unit"}: the unit's map, filter and receptive field
    POST /api/patches      {"model"?, "layer", "unit"}: the unit's top patches in the run's data
    POST /api/attribute    {"image", "model"?, "class", "method"}: CAM, Grad-CAM, saliency or occlusion
    POST /api/sample       {"model"?, "index"}: an image of the run's data (the top patches' numbers)

``image`` is a data URL (or base64) of any image file PIL reads. A bad request gets a 4xx answer
``{"error": "..."}`` naming what is wrong; the server goes on serving. Requests whose Host header is not
this server's (a web page elsewhere that rebinds a DNS name to 127.0.0.1) are refused.
"""

from __future__ import annotations

import json
import sys
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.explore.session import Explorer, RequestError, read_image

__all__ = ["make_server", "ExploreServer", "RequestError", "MAX_BODY_BYTES", "HOST"]

HOST = "127.0.0.1"  # never another interface: the page runs models on uploads, for this machine's user only


def _upload_cap() -> int:
    from cnnlab.limits import MAX_UPLOAD_BYTES

    return MAX_UPLOAD_BYTES


MAX_BODY_BYTES = _upload_cap() * 4 // 3 + (64 << 10)  # an upload in base64, and the rest of the JSON
REQUEST_TIMEOUT = 30  # seconds a connection may take to send its request (a stalled client frees its thread)
STATIC = {"/static/explore.js": ("explore.js", "text/javascript; charset=utf-8"),
          "/static/explore.css": ("explore.css", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class ExploreServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer holding the explorers and the rendered page."""

    daemon_threads = True

    def __init__(self, explorers: list[Explorer], port: int, *, quiet: bool = True) -> None:
        self.explorers = explorers
        self.quiet = quiet
        super().__init__((HOST, port), _Handler)
        self.page = _render_page(explorers)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def make_server(explorers: list[Explorer], *, port: int = 0, quiet: bool = True) -> ExploreServer:
    """The server for ``explorers`` on 127.0.0.1:``port`` (0: a free port); call ``serve_forever()``."""
    if not explorers:
        raise RequestError("no model to explore")
    return ExploreServer(explorers, port, quiet=quiet)


def _render_page(explorers: list[Explorer]) -> bytes:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from cnnlab import __version__

    env = Environment(loader=PackageLoader("cnnlab.explore", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(("html", "j2")), trim_blocks=True, lstrip_blocks=True)
    title = " vs ".join(e.label for e in explorers)
    return env.get_template("explore.html.j2").render(title=title, version=__version__,
                                                      explorers=explorers).encode("utf-8")


def _static(name: str) -> bytes:
    return resources.files("cnnlab.explore").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: ExploreServer
    server_version = "cnnlab-explore"
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        if not self.server.quiet:
            super().log_message(format, *args)

    # ------------------------------------------------------------------------------ answering

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except ConnectionError:  # the page was closed or reloaded before the answer: nothing to do
            self.close_connection = True

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc, allow_nan=False).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self.close_connection = True  # an unread body must not be taken for the next request
        self._json(status, {"error": message, "status": status})

    def _host_ok(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in (f"{HOST}:{port}", f"localhost:{port}")

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        if not self._host_ok():
            return self._error(403, "this server answers requests for 127.0.0.1 only")
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, self.server.page, "text/html; charset=utf-8")
        if path in STATIC:
            name, kind = STATIC[path]
            return self._send(200, _static(name), kind)
        if path == "/api/info":
            return self._json(200, {"models": [e.info() for e in self.server.explorers],
                                     "max_upload_bytes": _upload_cap()})
        if path in _ROUTES:
            return self._error(405, f"{path} takes POST with a JSON body")
        return self._error(404, f"no such page: {path}")

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok():
            return self._error(403, "this server answers requests for 127.0.0.1 only")
        path = self.path.split("?", 1)[0]
        route = _ROUTES.get(path)
        if route is None:
            return self._error(404, f"no such API endpoint: {path}")
        try:
            doc = self._read_json()
            answer = route(self._explorer(doc), doc)
        except RequestError as err:
            return self._error(err.status, str(err))
        except CnnlabError as err:
            return self._error(400, str(err))
        except (ConnectionError, TimeoutError):  # the client left or stalled while sending: nobody to answer
            self.close_connection = True
            return None
        except Exception as err:  # noqa: BLE001 (a bug must not stop the server; the page shows it)
            traceback.print_exc(file=sys.stderr)
            return self._error(500, f"internal error ({type(err).__name__}: {err})")
        return self._json(200, answer)

    def _read_json(self) -> dict[str, Any]:
        from cnnlab.safeio import parse_json

        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError("a POST needs a Content-Length", 411)
        if not length.isdigit():
            raise RequestError(f"Content-Length {length!r} is not a number")
        if int(length) > MAX_BODY_BYTES:
            self._drain(int(length))
            raise RequestError(f"the request is {int(length) >> 20} MiB; at most {MAX_BODY_BYTES >> 20} MiB "
                               f"(images up to {_upload_cap() >> 20} MiB)", 413)
        kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise RequestError(f"the body must be application/json, not {kind or 'untyped'}", 415)
        raw = self.rfile.read(int(length))
        if len(raw) != int(length):
            raise RequestError("the request body ended early")
        doc = parse_json(raw, where="the request body", error=RequestError)
        if not isinstance(doc, dict):
            raise RequestError("the request body must be a JSON object")
        return doc

    def _drain(self, length: int) -> None:
        """Read and drop a body a few times too large, so that the client reads the answer instead of
        finding its connection reset while it still sends; a larger claim is answered at once."""
        left = length if length <= 4 * MAX_BODY_BYTES else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

    def _explorer(self, doc: dict[str, Any]) -> Explorer:
        i, n = doc.get("model", 0), len(self.server.explorers)
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise RequestError(f"\"model\" must be an integer in 0..{n - 1}, got {i!r}")
        return self.server.explorers[i]


def _image(doc: dict[str, Any]) -> Any:
    from cnnlab.limits import MAX_IMAGE_SIDE

    if "image" not in doc:
        raise RequestError("the request has no \"image\"")
    return read_image(doc["image"], max_bytes=_upload_cap(), max_side=MAX_IMAGE_SIDE)


def _flag(doc: dict[str, Any], key: str, default: bool) -> bool:
    value = doc.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(f"\"{key}\" must be true or false, got {value!r}")
    return value


_ROUTES = {
    "/api/predict": lambda e, d: e.predict(_image(d), top_k=d.get("top_k", 5), maps=_flag(d, "maps", True)),
    "/api/unit": lambda e, d: e.unit(_image(d), d.get("layer"), d.get("unit")),
    "/api/patches": lambda e, d: e.top_patches(d.get("layer"), d.get("unit")),
    "/api/attribute": lambda e, d: e.attribute(_image(d), d.get("class"), d.get("method")),
    "/api/sample": lambda e, d: e.sample(d.get("index")),
}
