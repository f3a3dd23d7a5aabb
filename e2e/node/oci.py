"""Image archives in the `docker save` layout, which `ctr images import` reads and names
after their `RepoTags`: one uncompressed layer made from a root file system, and the image
config (user, environment, entrypoint) that the kubelet's runtime applies.

The layer is written by GNU tar with sorted names, numeric owners and a fixed time, so the
same root file system always gives the same bytes (and the same image id).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

EPOCH = "1970-01-01 00:00:00Z"  # every file's mtime in a layer: same tree, same bytes
# Never in a layer: what the runtime mounts over at start, and caches of the build.
EXCLUDED = ("./proc/*", "./sys/*", "./dev/*", "./run/*", "./tmp/*", "./var/cache/apt/*", "./var/lib/apt/lists/*")


@dataclass(frozen=True)
class ImageConfig:
    """What `docker inspect` calls Config: how the runtime starts the image's process."""

    user: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    workdir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        config: dict[str, object] = {"Env": [f"{k}={v}" for k, v in self.env.items()]}
        if self.user:
            config["User"] = self.user
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.workdir:
            config["WorkingDir"] = self.workdir
        if self.labels:
            config["Labels"] = dict(self.labels)
        return config


def normalise(ref: str) -> str:
    """The name containerd gives `ref` (Docker's rules): `busybox:1.37.0` is
    `docker.io/library/busybox:1.37.0`, `apache/airflow:3.2.0` is `docker.io/apache/airflow:3.2.0`."""
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_layer(rootfs: Path, out: Path) -> str:
    """Tar `rootfs` into `out` reproducibly; returns the layer's sha256 (its diff id)."""
    if shutil.which("tar") is None:
        raise RuntimeError("GNU tar is needed to write image layers")
    excludes = [f"--exclude={pattern}" for pattern in EXCLUDED]
    subprocess.run(
        [
            "tar", "--create", f"--file={out}", f"--directory={rootfs}", "--sort=name",
            "--numeric-owner", f"--mtime={EPOCH}", "--xattrs", "--format=posix",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            *excludes, ".",
        ],
        check=True,
    )  # fmt: skip
    return sha256_file(out)


def write_archive(rootfs: Path, refs: Sequence[str], config: ImageConfig, out: Path) -> str:
    """Write `out`, an image archive of `rootfs` tagged with every name in `refs`.
    Returns the image id (the sha256 of its config)."""
    if not refs:
        raise ValueError("an image archive needs at least one name")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".archive-") as tmp:
        work = Path(tmp)
        layer = work / "layer.tar"
        diff_id = write_layer(rootfs, layer)
        image = {
            "architecture": "amd64",
            "os": "linux",
            "config": config.as_json(),
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
            "history": [{"created_by": "e2e.node.images", "created": "1970-01-01T00:00:00Z"}],
        }
        config_bytes = json.dumps(image, sort_keys=True, separators=(",", ":")).encode()
        image_id = hashlib.sha256(config_bytes).hexdigest()
        manifest = [
            {
                "Config": f"{image_id}.json",
                "RepoTags": [normalise(ref) for ref in refs],
                "Layers": [f"{diff_id}/layer.tar"],
            }
        ]
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w") as archive:
            _add_bytes(archive, f"{image_id}.json", config_bytes)
            _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
            archive.add(layer, arcname=f"{diff_id}/layer.tar")
        partial.replace(out)  # never a half-written archive under the final name
        return image_id


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, _Reader(data))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


def archive_tags(archive: Path) -> list[str]:
    """The names an archive written by `write_archive` carries."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise ValueError(f"{archive} has no manifest.json")
        manifest = json.loads(member.read())
    return [tag for entry in manifest for tag in entry.get("RepoTags", [])]
