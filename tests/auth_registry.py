"""A token-authenticating front for the test registry, like Docker Hub's or GHCR's.

``/v2/...`` needs ``Authorization: Bearer TOKEN`` and answers 401 with a Bearer challenge
naming ``/token``; ``/token`` trades Basic credentials (or nothing, when anonymous pulls
are allowed) for a token. Everything else is proxied to the real docker-registry. This
is a fake of a third-party service, not of clrk.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

PASSED = ("content-type", "content-length", "docker-content-digest", "etag")


class AuthRegistry:
    def __init__(self, upstream: str, username: str = "puller", password: str = "s3cret",
                 anonymous: bool = False, blob_delay: float = 0.0) -> None:
        self.upstream = upstream
        self.username, self.password = username, password
        self.anonymous = anonymous
        self.blob_delay = blob_delay  # seconds before each blob (a slow, far registry)
        self.token = secrets.token_hex(8)
        self.token_requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    outer.token_requests += 1
                    header = self.headers.get("Authorization", "")
                    want = "Basic " + base64.b64encode(
                        f"{outer.username}:{outer.password}".encode()).decode()
                    if header != want and not (outer.anonymous and not header):
                        return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    return self._send(200, b'{"token":"%s"}' % outer.token.encode())
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {
                        "WWW-Authenticate": f'Bearer realm="http://{outer.host}/token",'
                                            'service="test-registry"'})
                if "/blobs/" in self.path and outer.blob_delay:
                    time.sleep(outer.blob_delay)
                r = httpx.request(self.command, f"http://{outer.upstream}{self.path}",
                                  headers={"Accept": self.headers.get("Accept", "*/*")},
                                  follow_redirects=True, timeout=60)
                self._send(r.status_code, r.content,
                           {k: v for k, v in r.headers.items() if k.lower() in PASSED})

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None
                      ) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                if "content-type" not in {k.lower() for k in headers or {}}:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
