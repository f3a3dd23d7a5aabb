"""A local Helm chart repository: an index.yaml for a folder of chart archives, served
over HTTP on 127.0.0.1 (what an air-gapped user does with any static file server)."""

from __future__ import annotations

import hashlib
import http.server
import tarfile
import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import yaml


def chart_metadata(archive: Path) -> dict[str, Any]:
    """The Chart.yaml at the top of a chart archive (`<name>/Chart.yaml`)."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) == 2 and parts[1] == "Chart.yaml":
                handle = tar.extractfile(member)
                if handle is not None:
                    meta: dict[str, Any] = yaml.safe_load(handle.read())
                    return meta
    raise ValueError(f"{archive}: no <chart>/Chart.yaml at the top of the archive")


def index(folder: Path, base_url: str) -> dict[str, Any]:
    """A Helm repository index (apiVersion v1) of every `.tgz` in `folder`."""
    entries: dict[str, list[dict[str, Any]]] = {}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for archive in sorted(folder.glob("*.tgz")):
        meta = chart_metadata(archive)
        entry = dict(meta)
        entry["digest"] = hashlib.sha256(archive.read_bytes()).hexdigest()
        entry["urls"] = [f"{base_url.rstrip('/')}/{archive.name}"]
        entry["created"] = now
        entries.setdefault(str(meta["name"]), []).append(entry)
    return {"apiVersion": "v1", "entries": entries, "generated": now}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ChartRepository:
    """Serves a copy of the archives plus index.yaml on http://127.0.0.1:<port>/."""

    def __init__(self, charts: Path, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for archive in charts.glob("*.tgz"):
            (root / archive.name).write_bytes(archive.read_bytes())
        handler = partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        (root / "index.yaml").write_text(yaml.safe_dump(index(root, self.url), sort_keys=False))
        self.thread = threading.Thread(target=self.server.serve_forever, name="chart-repository", daemon=True)

    def start(self) -> str:
        self.thread.start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
