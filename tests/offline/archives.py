"""Chart archives packaged another way, or changed: what the chart content tests feed the digest."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

Files = dict[str, bytes]  # path inside the archive ("airflow/templates/x.yaml") -> bytes


def files_of(archive: Path | bytes) -> Files:
    """Every regular file of a .tgz, by its path inside it, in the archive's order."""
    data = archive if isinstance(archive, bytes) else archive.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        out: Files = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                out[member.name] = handle.read()
        return out


def packed(files: Files, *, mtime: int = 0, level: int = 9, reverse: bool = False, folders: bool = False) -> bytes:
    """A .tgz of `files` with the given mtimes, gzip level and member order (and folder entries)."""
    buffer = io.BytesIO()
    names = sorted(files, reverse=reverse)
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=level) as tar:
        seen: set[str] = set()
        for name in names:
            if folders:
                parts = name.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    folder = "/".join(parts[:depth])
                    if folder not in seen:
                        seen.add(folder)
                        info = tarfile.TarInfo(folder)
                        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
                        tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), mtime, 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def changed(archive: Path | bytes, change: Callable[[Files, str], None], **packing: bool | int) -> bytes:
    """The archive with `change(files, top folder)` applied, packed again."""
    files = files_of(archive)
    top = next(iter(files)).split("/")[0]
    change(files, top)
    return packed(files, **packing)  # type: ignore[arg-type]


def with_template_changed(files: Files, top: str) -> None:
    """One template of the chart renders one object more (a ConfigMap)."""
    name = next(n for n in sorted(files) if n.startswith(f"{top}/templates/") and n.endswith(".yaml"))
    files[name] += b"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tampered\n"


def tampered(archive: Path, target: Path) -> Path:
    """A valid chart archive of the same name and version whose first template renders a ConfigMap more."""
    target.mkdir(parents=True, exist_ok=True)
    out = target / archive.name
    out.write_bytes(changed(archive, with_template_changed))
    return out
