"""Fake LLM providers on loopback, speaking the real wire formats (Anthropic Messages,
OpenAI chat.completions / responses / embeddings, Gemini generateContent), over TLS
with a certificate for the real hostnames from a test CA. They check the credential
each provider expects and remember every request, so tests can show what reached
"upstream". Asked to (``"echo": true`` in a JSON body, or a path ending in ``/echo``)
they behave like a hostile debug endpoint: they echo the request (headers, body, the
credential in base64, alone and inside a larger base64 blob), in the body and in
response headers, as JSON or SSE, written a few bytes at a time."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clrk import pki

HOSTS = ["api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com",
         "us-central1-aiplatform.googleapis.com", "bedrock-runtime.us-east-1.amazonaws.com",
         "mcp.example.com", "api.github.com", "llm-backend.test"]
ANTHROPIC = {"input_tokens": 12, "output_tokens": 24, "cache_read_input_tokens": 3,
             "cache_creation_input_tokens": 0}
OPENAI = {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
GOOGLE = {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    out = b""
    for name, data in events:
        if name:
            out += f"event: {name}\n".encode()
        out += b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode())
        out += b"\n\n"
    return out


@dataclass
class FakeProviders:
    keys: dict[str, str] = field(default_factory=dict)  # host -> the credential expected
    verifiers: dict[str, Any] = field(default_factory=dict)  # host -> check(Seen) -> bool
    seen: list[Seen] = field(default_factory=list)
    ca: pki.KeyPair = field(default_factory=lambda: pki.generate_ca("fake-provider-ca"))
    port: int = 0
    status: int | None = None  # force this status for the next answers (e.g. 429)
    fail_next: dict[str, int] = field(default_factory=dict)  # host -> how many 503s first
    replies: dict[str, str] = field(default_factory=dict)  # model -> its answer's text

    def start(self) -> None:
        leaf = pki.issue_leaf(self.ca, HOSTS)
        self._dir = tempfile.TemporaryDirectory(prefix="fake-providers-")
        d = Path(self._dir.name)
        (d / "leaf.pem").write_bytes(leaf.cert_pem)
        (d / "leaf.key").write_bytes(leaf.key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(d / "leaf.pem", d / "leaf.key")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size) if size else b""
                seen = Seen(self.command, self.path,
                            {k.lower(): v for k, v in self.headers.items()}, body)
                outer.seen.append(seen)
                status, ctype, payload, extra = outer.answer(seen)
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(payload)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if not extra.get("x-echo"):
                    self.wfile.write(payload)
                    return
                for at in range(0, len(payload), ECHO_PIECE):  # values split across reads
                    self.wfile.write(payload[at:at + ECHO_PIECE])
                    self.wfile.flush()
                    time.sleep(0.002)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()

    def host_of(self, seen: Seen) -> str:
        return seen.headers.get("host", "").split(":")[0]

    def credential(self, seen: Seen) -> str | None:
        auth = seen.headers.get("authorization", "")
        query = parse_qs(urlsplit(seen.path).query)
        return (seen.headers.get("x-api-key") or seen.headers.get("x-goog-api-key")
                or (auth.removeprefix("Bearer ") if auth else None)
                or next(iter(query.get("key") or []), None))

    def answer(self, seen: Seen) -> tuple[int, str, bytes, dict[str, str]]:
        host = self.host_of(seen)
        expected = self.keys.get(host)
        verify = self.verifiers.get(host)
        if (expected is not None and self.credential(seen) != expected) or (
                verify is not None and not verify(seen)):
            return 401, "application/json", json.dumps(
                {"type": "error", "error": {"type": "authentication_error",
                                            "message": "invalid credential"}}).encode(), {}
        if self.fail_next.get(host, 0) > 0:
            self.fail_next[host] -= 1
            return 503, "application/json", json.dumps(
                {"error": {"message": "overloaded", "type": "overloaded"}}).encode(), {}
        if self.status is not None:
            return self.status, "application/json", json.dumps(
                {"error": {"message": "forced", "type": "overloaded"}}).encode(), {}
        path = urlsplit(seen.path).path
        try:
            doc = seen.json() if seen.body else {}
        except ValueError:
            doc = {}
        if path.endswith("/echo") or (isinstance(doc, dict) and doc.get("echo")):
            return echo(seen, self.credential(seen) or "", bool(
                (isinstance(doc, dict) and doc.get("stream"))
                or "text/event-stream" in seen.headers.get("accept", "")))
        if path == "/v1/messages":
            return self._anthropic(doc)
        if path.endswith("/chat/completions"):
            return self._chat(doc)
        if path.endswith("/responses"):
            return self._responses(doc)
        if path.endswith("/embeddings"):
            return 200, "application/json", json.dumps({
                "object": "list", "model": doc.get("model"),
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 6, "total_tokens": 6}}).encode(), {}
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return self._gemini(path, seen.path)
        if path.startswith("/model/") and path.endswith("/converse"):
            return 200, "application/json", json.dumps({
                "output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
                "stopReason": "end_turn", "metrics": {"latencyMs": 1},
                "usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}}).encode(), {}
        return 200, "application/json", b'{"ok": true}', {}

    def _anthropic(self, doc: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
        model = doc.get("model", "")
        text = self.replies.get(model, "Hello!")
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": text}],
                   "stop_reason": "end_turn", "stop_sequence": None, "usage": ANTHROPIC}
        if not doc.get("stream"):
            return 200, "application/json", json.dumps(message).encode(), {}
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**ANTHROPIC, "output_tokens": 1}}
        return 200, "text/event-stream", _sse([
            ("message_start", {"type": "message_start", "message": start}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {
                "stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": ANTHROPIC["output_tokens"]}}),
            ("message_stop", {"type": "message_stop"})]), {}

    def _chat(self, doc: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
        model = doc.get("model", "")
        base = {"id": "chatcmpl-fake", "created": 1, "model": model}
        if not doc.get("stream"):
            return 200, "application/json", json.dumps({
                **base, "object": "chat.completion", "choices": [{
                    "index": 0, "message": {"role": "assistant",
                                            "content": self.replies.get(model, "Hi")},
                    "finish_reason": "stop", "logprobs": None}], "usage": OPENAI}).encode(), {}
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, Any]] = [
            (None, {**chunk, "choices": [{"index": 0, "delta": {
                "role": "assistant", "content": self.replies.get(model, "Hi")},
                                          "finish_reason": None}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {},
                                          "finish_reason": "stop"}]})]
        if (doc.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**chunk, "choices": [], "usage": OPENAI}))
        events.append((None, b"[DONE]"))
        return 200, "text/event-stream", _sse(events), {}

    def _responses(self, doc: dict[str, Any]) -> tuple[int, str, bytes, dict[str, str]]:
        usage = {"input_tokens": 13, "output_tokens": 5, "total_tokens": 18,
                 "input_tokens_details": {"cached_tokens": 2},
                 "output_tokens_details": {"reasoning_tokens": 1}}
        response = {"id": "resp_fake", "object": "response", "created_at": 1,
                    "status": "completed", "model": doc.get("model", ""),
                    "output": [{"type": "message", "id": "msg_1", "status": "completed",
                                "role": "assistant", "content": [
                                    {"type": "output_text", "text": "Hi",
                                     "annotations": []}]}],
                    "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
                    "usage": usage}
        if not doc.get("stream"):
            return 200, "application/json", json.dumps(response).encode(), {}
        return 200, "text/event-stream", _sse([
            ("response.created", {"type": "response.created", "sequence_number": 0,
                                  "response": {**response, "status": "in_progress",
                                               "usage": None, "output": []}}),
            ("response.completed", {"type": "response.completed", "sequence_number": 1,
                                    "response": response})]), {}

    def _gemini(self, path: str, full: str) -> tuple[int, str, bytes, dict[str, str]]:
        model = path.rsplit("/models/", 1)[1].split(":", 1)[0]
        text = self.replies.get(model, "Hi")
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                            "index": 0}], "modelVersion": model, "responseId": "r-fake"}
        last = {**chunk, "candidates": [{**chunk["candidates"][0], "finishReason": "STOP"}],
                "usageMetadata": GOOGLE}
        if ":streamGenerateContent" not in path:
            return 200, "application/json", json.dumps(last).encode(), {}
        if "alt=sse" in full:
            return 200, "text/event-stream", _sse([(None, chunk), (None, last)]), {}
        return 200, "application/json", json.dumps([chunk, last]).encode(), {}


def serving(keys: dict[str, str]) -> Iterator[FakeProviders]:
    """Fake providers expecting ``keys`` (host -> credential), for a fixture's life."""
    providers = FakeProviders(keys=dict(keys))
    providers.start()
    try:
        yield providers
    finally:
        providers.stop()


ECHO_PIECE = 13  # bytes per write of an echo: values cross the pieces' boundaries


def echo(seen: Seen, credential: str, sse: bool) -> tuple[int, str, bytes, dict[str, str]]:
    """What a hostile debug endpoint answers: the request's headers and body, the
    credential in base64 and every header inside a base64 blob, in the body; the
    credential and its base64 in response headers."""
    key64 = base64.b64encode(credential.encode()).decode()
    pieces = {"headers": seen.headers, "body": seen.body.decode("utf-8", "replace"),
              "credential_b64": key64, "url": seen.path,
              "blob": base64.b64encode(b"\x01" + json.dumps(seen.headers).encode()).decode()}
    extra = {"x-echo": "1", "x-echo-credential": credential, "x-echo-credential-b64": key64,
             "x-echo-authorization": seen.headers.get("authorization", "")}
    if not sse:
        return 200, "application/json", json.dumps(pieces).encode(), extra
    return 200, "text/event-stream", _sse([("echo", {k: v}) for k, v in pieces.items()]), extra


def sigv4_verifier(access_key: str, secret_key: str, region: str, service: str) -> Any:
    """A check that recomputes the request's AWS SigV4 signature with botocore's own
    signer and compares it with the one the request carries."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def verify(seen: Seen) -> bool:
        auth = seen.headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return False
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):]
                     .split(","))
        if not parts.get("Credential", "").startswith(f"{access_key}/"):
            return False
        signed = parts["SignedHeaders"].split(";")
        request = AWSRequest(method=seen.method, url=f"https://{seen.headers['host']}"
                             f"{seen.path}", data=seen.body,
                             headers={h: seen.headers[h] for h in signed})
        request.context["timestamp"] = seen.headers["x-amz-date"]
        signer = SigV4Auth(Credentials(access_key, secret_key), service, region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        return bool(parts["Signature"] == expected)

    return verify


class TokenEndpoint:
    """Google's OAuth token endpoint, on loopback: it checks the service account's JWT
    assertion against the account's public key and hands out an access token."""

    def __init__(self, token: str) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.token = token
        self.grants = 0
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        outer = self

        class Grant(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                from google.auth import jwt

                size = int(self.headers.get("content-length") or 0)
                form = parse_qs(self.rfile.read(size).decode())
                try:
                    jwt.decode(  # type: ignore[no-untyped-call]
                        form["assertion"][0], certs=outer.public_pem,
                        audience=["https://oauth2.googleapis.com/token",
                                  f"http://127.0.0.1:{outer.port}/token"])
                    status, body = 200, {"access_token": outer.token, "expires_in": 3600,
                                         "token_type": "Bearer"}
                    outer.grants += 1
                except Exception as err:
                    status, body = 400, {"error": "invalid_grant", "error_description":
                                         str(err)}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Grant)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def key_json(self) -> str:
        return json.dumps({
            "type": "service_account", "project_id": "test-project",
            "private_key_id": "k1", "private_key": self.private_pem,
            "client_email": "agent@test-project.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"http://127.0.0.1:{self.port}/token"})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


TOOLS = ("github_search_issues", "github_get_pr", "github_delete_repo", "shell_exec")


class FakeMCP:
    """An MCP server (the official SDK's own, Streamable HTTP) on loopback with TLS for
    mcp.example.com. Its tools echo their name; ``calls`` lists the tools actually run,
    to show what a policy stopped before it reached the server. ``/mcp`` answers in
    SSE, ``/mcp-json`` in plain JSON."""

    def __init__(self, ca: pki.KeyPair | None = None, tls: bool = True) -> None:
        import uvicorn
        from mcp.server.mcpserver.server import MCPServer
        from mcp.server.transport_security import TransportSecuritySettings
        from starlette.applications import Starlette
        from starlette.routing import Mount

        self.calls: list[str] = []
        self.ca = ca or pki.generate_ca("fake-mcp-ca")
        outer = self

        def server(json_response: bool) -> Any:
            mcp = MCPServer("fake-tools")
            def make(tool: str) -> Any:
                def run(query: str = "") -> str:
                    outer.calls.append(tool)
                    return f"{tool} ran {query}".strip()
                return run

            for tool in TOOLS:
                mcp.tool(name=tool, description=f"the {tool} tool")(make(tool))
            return mcp.streamable_http_app(
                json_response=json_response, stateless_http=True, streamable_http_path="/",
                transport_security=TransportSecuritySettings(
                    enable_dns_rebinding_protection=False))

        sse_app, json_app = server(False), server(True)

        async def lifespan(app: Any) -> Any:
            import contextlib

            async with contextlib.AsyncExitStack() as stack:
                for sub in (sse_app, json_app):
                    await stack.enter_async_context(sub.router.lifespan_context(sub))
                yield

        from contextlib import asynccontextmanager
        app = Starlette(routes=[Mount("/mcp-json", json_app), Mount("/mcp", sse_app)],
                        lifespan=asynccontextmanager(lifespan))
        self._dir = tempfile.TemporaryDirectory(prefix="fake-mcp-")
        d = Path(self._dir.name)
        kwargs: dict[str, Any] = {}
        if tls:
            leaf = pki.issue_leaf(self.ca, ["mcp.example.com", "127.0.0.1"])
            (d / "leaf.pem").write_bytes(leaf.cert_pem)
            (d / "leaf.key").write_bytes(leaf.key_pem)
            kwargs = {"ssl_certfile": str(d / "leaf.pem"), "ssl_keyfile": str(d / "leaf.key")}
        import socket
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", **kwargs)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        import time
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)
        self._dir.cleanup()


class OTLPCapture:
    """An OTLP/HTTP receiver on loopback that keeps every request it gets."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Receiver(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                outer.received.append((self.path, {k.lower(): v for k, v in
                                                   self.headers.items()},
                                       self.rfile.read(size)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def spans(self) -> list[dict[str, Any]]:
        return [span for path, _, body in self.received if path == "/v1/traces"
                for rs in json.loads(body)["resourceSpans"]
                for ss in rs["scopeSpans"] for span in ss["spans"]]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
