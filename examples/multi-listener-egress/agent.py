#!/usr/bin/env python3
"""multi-listener-egress's agent: one call to Claude over HTTPS (terminated by the
gateway's TLS listener, which injects the key and reads the call) and one PostgreSQL
handshake over plain TCP (the gateway's TCP listener: allowed by an EgressL4Route,
recorded as a connection, its bytes untouched)."""
import json
import os
import socket
import urllib.error
import urllib.request

report = {}
body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "Say hello."}]}).encode()
request = urllib.request.Request("https://api.anthropic.com/v1/messages", data=body,
                                 headers={"anthropic-version": "2023-06-01",
                                          "content-type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as r:
        report["llm"] = {"status": r.status, "text": json.load(r)["content"][0]["text"]}
except urllib.error.HTTPError as err:
    report["llm"] = {"status": err.code, "error": err.read().decode(errors="replace")[:200]}

# PostgreSQL's SSLRequest: any PostgreSQL server answers one byte, S or N.
host = os.environ.get("DATABASE_HOST", "db.internal.example.com")
try:
    with socket.create_connection((host, 5432), timeout=10) as db:
        db.sendall(bytes.fromhex("0000000804d2162f"))
        report["postgres"] = {"ssl_answer": db.recv(1).decode(errors="replace")}
except OSError as err:
    report["postgres"] = {"error": str(err)}
print(json.dumps(report))
