"""What a chart is, whatever its packaging: the content digest components/charts-lock.json pins.

The same chart is packaged in many ways: `helm package` rewrites Chart.yaml (sorted keys, no
comments) and puts each dependency's archive in `charts/` as a folder; a chart repository's
archive keeps README, LICENSE, docs and build folders that a copy made from source may leave out;
tar order, mtimes and gzip level differ. The sha256 of the archive changes with each of these;
the content digest does not, and changes with anything Helm renders.

**What it covers**, for the chart and, the same way, each sub-chart under `charts/`:

- `Chart.yaml`, as Helm reads it: the fields of Helm's chart metadata (name, version,
  apiVersion, appVersion, kubeVersion, type, description, home, icon, sources, keywords,
  maintainers, annotations, condition, tags, deprecated, dependencies), each scalar as written
  (`2.5.2` and `"2.5.2"` are the same), empty ones left out, as JSON with sorted keys;
- `values.yaml` and `values.schema.json`;
- every file under `templates/`, `crds/` and `files/` (what a template reads with `.Files`;
  tests/offline/test_chart_content.py checks the pinned charts read nothing else);
- each sub-chart, whether a folder `charts/<folder>/` or an archive `charts/<archive>.tgz`, as
  `charts/<its name>/...` (Helm skips entries of `charts/` whose name starts with `_` or `.`).

Everything else is left out: README, LICENSE, NOTICE, release notes, `.helmignore`,
`Chart.lock`, `*.prov`, and folders such as `docs/`, `ci/`, `tests/` or `dockerfiles/`.
Files are read as Helm reads an archive (the top folder stripped, `\\` read as `/`, a leading
UTF-8 byte order mark dropped); an archive with a link, a path outside its folder, a file twice
or more than Helm's limits (100 MiB in all, 5 MiB a file) is not a chart archive.

**The digest**: one line per covered file, `<sha256 of the file, hex>  <path>\\n`, sorted by path
(bytewise), the path relative to the chart's folder; the content digest is `sha256:` and the
sha256 of those lines. `python -m components.offline.chart_content ARCHIVE...` prints it (with
`--files`, the lines themselves).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import posixpath
import sys
import tarfile
import zlib
from collections.abc import Iterable
from typing import Any

import yaml

#: Helm's limits for loading a chart archive (helm.sh/helm/v3/pkg/chart/loader).
MAX_CHART_SIZE = 100 * 1024 * 1024
MAX_FILE_SIZE = 5 * 1024 * 1024

RENDERED_FILES = ("values.yaml", "values.schema.json")
RENDERED_FOLDERS = ("templates/", "crds/", "files/")
_BOM = b"\xef\xbb\xbf"

# Helm v3's chart metadata (Chart.yaml) and its parts: the keys it reads, the rest it ignores.
_METADATA = frozenset(
    {
        "name",
        "home",
        "sources",
        "version",
        "description",
        "keywords",
        "maintainers",
        "icon",
        "apiVersion",
        "condition",
        "tags",
        "appVersion",
        "deprecated",
        "annotations",
        "kubeVersion",
        "dependencies",
        "type",
    }
)
_MAINTAINER = frozenset({"name", "email", "url"})
_DEPENDENCY = frozenset({"name", "version", "repository", "condition", "tags", "enabled", "import-values", "alias"})
_BOOLEANS = frozenset({"deprecated", "enabled"})
_TRUE = frozenset({"true", "yes", "on", "y"})
_NULL = frozenset({"", "~", "null"})


class ChartContentError(ValueError):
    """Not a chart archive Helm would load."""


def content_digest(archive: bytes) -> str:
    """`sha256:<hex>` of the chart in `archive` (a .tgz): see the module's docstring."""
    return "sha256:" + hashlib.sha256(manifest(archive).encode()).hexdigest()


def manifest(archive: bytes) -> str:
    """The lines the content digest is the sha256 of: `<sha256>  <path>` per covered file."""
    entries = sorted(_covered(_archive_files(archive, MAX_CHART_SIZE), ""), key=lambda e: e[0].encode())
    return "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in entries)


def _archive_files(archive: bytes, budget: int) -> dict[str, bytes]:
    """The files of a chart archive as Helm's loader names them: relative to the top folder."""
    try:
        raw = _gunzip(archive, budget)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            return _members(tar)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:
        raise ChartContentError(f"not a gzipped tar archive ({exc})") from None


def _members(tar: tarfile.TarFile) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for member in tar:
        if member.isdir() or member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
            continue
        name = member.name.replace("\\", "/")
        if not member.isfile():
            raise ChartContentError(f"{name} is a link or a special file")
        cleaned = posixpath.normpath(name)
        if posixpath.isabs(cleaned) or cleaned == "." or cleaned.startswith(".."):
            raise ChartContentError(f"{name} is outside the chart's folder")
        if member.size > MAX_FILE_SIZE:
            raise ChartContentError(f"{name} is larger than {MAX_FILE_SIZE} bytes")
        parts = cleaned.split("/", 1)
        if len(parts) < 2:
            continue  # a file beside the chart's folder: Helm does not load it either
        if "\n" in parts[1]:
            raise ChartContentError(f"{name!r} has a line break in its name")
        if parts[1] in files:
            raise ChartContentError(f"{parts[1]} is in the archive twice")
        handle = tar.extractfile(member)
        files[parts[1]] = (handle.read() if handle else b"").removeprefix(_BOM)
    return files


def _gunzip(archive: bytes, budget: int) -> bytes:
    """The tar inside `archive`, refused beyond `budget` bytes (a gzip bomb stops early)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=io.BytesIO(archive)) as stream:
        while block := stream.read(1 << 20):
            out.write(block)
            if out.tell() > budget:
                raise ChartContentError(f"more than {MAX_CHART_SIZE} bytes when unpacked")
    return out.getvalue()


def _covered(files: dict[str, bytes], prefix: str) -> Iterable[tuple[str, bytes]]:
    """(path, bytes) of every file the digest covers, sub-charts included, paths under `prefix`."""
    if "Chart.yaml" not in files:
        raise ChartContentError(f"no {prefix}Chart.yaml")
    metadata = canonical_metadata(files["Chart.yaml"])
    yield f"{prefix}Chart.yaml", json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
    subcharts: dict[str, dict[str, bytes]] = {}
    for path, data in files.items():
        if path in RENDERED_FILES or path.startswith(RENDERED_FOLDERS):
            yield prefix + path, data
        elif path.startswith("charts/"):
            entry, _, rest = path.removeprefix("charts/").partition("/")
            if entry[:1] in ("_", "."):
                continue
            if not rest and entry.endswith(".tgz"):
                subcharts[entry] = _archive_files(data, MAX_CHART_SIZE)
            elif rest:
                subcharts.setdefault(entry + "/", {})[rest] = data
    names: dict[str, str] = {}
    for entry, subfiles in sorted(subcharts.items()):
        if "Chart.yaml" not in subfiles:
            raise ChartContentError(f"{prefix}charts/{entry} is not a chart (no Chart.yaml)")
        name = str(canonical_metadata(subfiles["Chart.yaml"]).get("name") or "")
        if not name or "/" in name:
            raise ChartContentError(f"{prefix}charts/{entry}Chart.yaml names no chart")
        if name in names:
            raise ChartContentError(f"{prefix}charts/{entry} and charts/{names[name]} are both chart {name}")
        names[name] = entry
        yield from _covered(subfiles, f"{prefix}charts/{name}/")


def canonical_metadata(chart_yaml: bytes) -> dict[str, Any]:
    """Chart.yaml as Helm reads it: its metadata fields, scalars as written, empty ones left out."""
    try:
        raw = yaml.load(chart_yaml, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise ChartContentError(f"Chart.yaml is not YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ChartContentError("Chart.yaml is not a mapping")
    return _fields(raw, _METADATA)


def _fields(mapping: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if key not in known:
            continue
        if key == "maintainers" and isinstance(value, list):
            value = [_fields(m, _MAINTAINER) if isinstance(m, dict) else m for m in value]
        elif key == "dependencies" and isinstance(value, list):
            value = [_fields(d, _DEPENDENCY) if isinstance(d, dict) else d for d in value]
        elif key in _BOOLEANS and isinstance(value, str):
            value = "true" if value.lower() in _TRUE else ""
        value = _without_empty(value)
        if value not in ("", [], {}):
            out[key] = value
    return out


def _without_empty(value: Any) -> Any:
    if isinstance(value, str):
        return "" if value.lower() in _NULL else value
    if isinstance(value, dict):
        return {k: v for k, v in ((k, _without_empty(v)) for k, v in value.items()) if v not in ("", [], {})}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.offline.chart_content",
        description="Print the content digest (what components/charts-lock.json pins as contentDigest) "
        "and the archive's own sha256 of each chart archive.",
    )
    parser.add_argument("archives", nargs="+", metavar="ARCHIVE")
    parser.add_argument("--files", action="store_true", help="also print the lines the digest is taken over")
    args = parser.parse_args(argv)
    for path in args.archives:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            digest = content_digest(data)
        except (OSError, ChartContentError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 1
        print(f"{path}: contentDigest {digest}, archive sha256:{hashlib.sha256(data).hexdigest()}")
        if args.files:
            print(manifest(data), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
