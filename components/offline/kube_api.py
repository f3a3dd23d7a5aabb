"""A small Kubernetes API client over HTTPS with client certificates (stdlib only).

Enough for the end-to-end checks and the preview's server-side dry run (components/offline/dry_run.py):
GET, LIST, server-side apply, DELETE and discovery.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIELD_MANAGER = "airflow-k8s-e2e"  # the end-to-end run's objects (the dry run names its own)


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path}: HTTP {status}: {body[:2000]}")


@dataclass(frozen=True)
class ApiResource:
    group_version: str
    name: str  # plural, e.g. "deployments"
    kind: str
    namespaced: bool


class Kube:
    def __init__(
        self,
        server: str,
        ca: Path | None,
        cert: Path | None,
        key: Path | None,
        *,
        token: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        """A client of `server`: TLS trusting `ca` (or `context`, made by the caller), authenticated by the
        client certificate `cert`/`key` or a bearer `token`."""
        self.server = server.rstrip("/")
        self.context = context or ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert is not None and key is not None:
            self.context.load_cert_chain(str(cert), str(key))
        self.token = token
        self._local = threading.local()
        self._resources: dict[tuple[str, str], ApiResource] | None = None

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        """This thread's connection to the server, kept open between requests (a TLS handshake per
        request costs as much as the request itself)."""
        conn: http.client.HTTPSConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            url = urllib.parse.urlsplit(self.server)
            conn = http.client.HTTPSConnection(
                str(url.hostname), url.port or 443, context=self.context, timeout=timeout
            )
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", timeout: float = 30
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if data is not None:
            headers["Content-Type"] = content_type
        target = urllib.parse.urlsplit(self.server).path.rstrip("/") + path
        for attempt in (1, 2):
            conn = self._connection(timeout)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                http.client.CannotSendRequest,
            ):
                self._drop_connection()  # the server closed a kept connection: once more on a new one
                if attempt == 2:
                    raise
            except http.client.HTTPException as exc:
                self._drop_connection()
                raise ConnectionError(f"{method} {path}: {exc!r}") from None
            except OSError:
                self._drop_connection()
                raise
        if resp.status >= 400:
            raise ApiError(method, path, resp.status, raw.decode(errors="replace"))
        if not raw:
            return None
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def get_or_none(self, path: str) -> Any:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    # --- discovery -----------------------------------------------------------------

    def resources(self) -> dict[tuple[str, str], ApiResource]:
        """(apiVersion, kind) -> resource, from the server's discovery documents."""
        if self._resources is None:
            found: dict[tuple[str, str], ApiResource] = {}
            versions = ["v1"]
            for group in self.get("/apis")["groups"]:
                versions += [v["groupVersion"] for v in group["versions"]]
            for gv in versions:
                path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
                try:
                    doc = self.get(path)
                except ApiError:
                    continue
                for r in doc.get("resources", []):
                    if "/" in r["name"]:
                        continue  # subresources
                    found[(gv, r["kind"])] = ApiResource(gv, r["name"], r["kind"], bool(r["namespaced"]))
            self._resources = found
        return self._resources

    def rediscover(self) -> dict[tuple[str, str], ApiResource]:
        """Discovery read afresh: kinds that CRDs added since the last read are included."""
        self._resources = None
        return self.resources()

    def path_of(self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
        res = self.resources().get((api_version, kind))
        if res is None:
            self._resources = None  # CRDs may just have been added
            res = self.resources().get((api_version, kind))
        if res is None:
            raise ApiError("DISCOVER", f"{api_version}/{kind}", 404, "no such kind on the server")
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if res.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{res.name}"
        return base + (f"/{urllib.parse.quote(name)}" if name else "")

    # --- objects ---------------------------------------------------------------------

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(self.path_of(api_version, kind, namespace))["items"]
        return items

    def read(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        obj: dict[str, Any] | None = self.get_or_none(self.path_of(api_version, kind, namespace, name))
        return obj

    def apply(
        self, obj: dict[str, Any], *, dry_run: bool = False, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply (the API server validates, defaults and admits the object); with `dry_run`
        it goes through every stage (admission included) and nothing is stored."""
        meta = obj["metadata"]
        path = self.path_of(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        params = {"fieldManager": field_manager, "force": "true"} | ({"dryRun": "All"} if dry_run else {})
        query = urllib.parse.urlencode(params)
        result: dict[str, Any] = self.request(
            "PATCH", f"{path}?{query}", obj, content_type="application/apply-patch+yaml"
        )
        return result

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        path = self.path_of(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        result: dict[str, Any] = self.request("POST", path + ("?dryRun=All" if dry_run else ""), obj)
        return result

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.request(
                "DELETE",
                self.path_of(api_version, kind, namespace, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.status != 404:
                raise


def wait_for(what: str, check: Callable[[], str | None], timeout: float, interval: float = 1.0) -> None:
    """Poll `check` until it returns None (done); it returns a reason while not done."""
    deadline = time.monotonic() + timeout
    reason: str | None = "not checked yet"
    while time.monotonic() < deadline:
        try:
            reason = check()
        except (ApiError, OSError) as exc:
            reason = str(exc)
        if reason is None:
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not done after {timeout:.0f}s: {reason}")
