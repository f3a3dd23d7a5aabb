"""A git server for the node scenario's `git` part: git's smart HTTP protocol (`git http-backend`,
Debian's git) behind TLS and one token, the way a private GitLab or Gitea serves a repository.

    python -m e2e.node.git_server --listen 10.89.0.1:PORT --root DIR --cert C --key K \\
        --token-file T --folder F

It serves the repositories under `--root` (read only: fetches and clones; the harness pushes into
the bare repository on disk) to a client that sends `Authorization: Basic` with any user name and
the token, answers 401 otherwise, and logs one line per request. `--folder` is the node's folder:
the node's cleanup recognises (and stops) its process by it, as it does the node's other helpers.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import signal
import ssl
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BACKEND_TIMEOUT = 120


def authorized(header: str | None, token: str) -> bool:
    """Basic auth carrying `token` as the password (any user name)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
    except ValueError:
        return False
    _, sep, password = decoded.partition(":")
    return bool(sep) and hmac.compare_digest(password.encode(), token.encode())


def cgi_env(method: str, path: str, headers: Any, root: Path, length: int, remote: str) -> dict[str, str]:
    """The CGI environment `git http-backend` reads (git-http-backend(1))."""
    url = urllib.parse.urlsplit(path)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": method,
        "PATH_INFO": urllib.parse.unquote(url.path),
        "QUERY_STRING": url.query,
        "CONTENT_TYPE": headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(length),
        "REMOTE_USER": "airflow",
        "REMOTE_ADDR": remote,
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    if headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = headers["Git-Protocol"]
    if headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
    return env


def split_cgi(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """A CGI answer: (status, headers, body)."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, sep, body = output.partition(separator)
        if sep:
            break
    else:
        return 502, [], b"git http-backend answered without headers"
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.strip().split()[0])
        elif name.strip():
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class GitHandler(BaseHTTPRequestHandler):
    server_version = "airflow-k8s-e2e-git"
    root: Path
    token: str

    def do_GET(self) -> None:
        self.serve()

    def do_POST(self) -> None:
        self.serve()

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def serve(self) -> None:
        if not authorized(self.headers.get("Authorization"), self.token):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="dags"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.read_body()
        env = cgi_env(self.command, self.path, self.headers, self.root, len(body), self.client_address[0])
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=BACKEND_TIMEOUT, check=False
        )
        if done.stderr:
            sys.stderr.write(done.stderr.decode(errors="replace"))
        status, headers, answer = split_cgi(done.stdout)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.node.git_server", description=__doc__)
    parser.add_argument("--listen", required=True, help="address:port")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--cert", required=True, type=Path)
    parser.add_argument("--key", required=True, type=Path)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--folder", required=True, type=Path, help="the node's folder (its cleanup finds us by it)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    handler = type("Handler", (GitHandler,), {"root": args.root, "token": args.token_file.read_text().strip()})
    server = ThreadingHTTPServer((host, int(port)), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving {args.root} on https://{args.listen}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
