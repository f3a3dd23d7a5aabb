"""Chart archives the way Helm gets them: local first, else fetched from the chart's repository
at the pinned version, checked against the lock's digest, and cached.

An archive `<name>-<version>.tgz` is looked for in this order, first found wins:

1. `$AIRFLOW_K8S_CHARTS` (a folder), then `../shared/charts` beside the project;
2. the chart cache: `$AIRFLOW_K8S_CHART_CACHE`, default `~/.cache/airflow-k8s/charts`;
3. the chart's repository, as Helm reads one: its `index.yaml`, then the archive the index lists
   for that version, saved into the cache. The repository is `$AIRFLOW_K8S_CHART_REPOSITORY` when
   set (a mirror that serves every chart, such as a local one), else the one the Release names
   (the lock's, unless the stack's `chart.repository` changes it).

`components/charts-lock.json` pins each chart the components deploy: name, version, repository and
the content digest of what Helm renders (`chart_content`: the same whatever the packaging, so the
archive a chart repository serves passes as well as one repackaged from source), with the sha256
of archives known to hold that content as a fast path. An archive of a pinned chart is used only
when it holds the pinned content, wherever it was found; a chart version that is not in the lock is
used from a local folder as it is, and never fetched.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .chart_content import ChartContentError, content_digest

LOCK_FILE = Path(__file__).resolve().parents[1] / "charts-lock.json"
#: How the lock is named in messages: its place in the repository.
LOCK_NAME = "components/charts-lock.json"
CHARTS_ENV = "AIRFLOW_K8S_CHARTS"
CACHE_ENV = "AIRFLOW_K8S_CHART_CACHE"
REPOSITORY_ENV = "AIRFLOW_K8S_CHART_REPOSITORY"
#: Seconds to wait for a repository to answer (connecting, and each read).
FETCH_TIMEOUT = 5.0

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ChartNotFoundError(FileNotFoundError):
    """No archive of a chart: says what was looked for and how to provide it, in one line."""


class ChartDigestError(ChartNotFoundError):
    """An archive of a pinned chart that does not hold the pinned content: refused."""


@dataclass(frozen=True)
class ChartPin:
    name: str
    version: str
    repository: str
    content_digest: str  # "sha256:<hex>" of what Helm renders (chart_content)
    archive_digests: tuple[str, ...] = ()  # "sha256:<hex>" of archives known to hold that content

    @property
    def archive(self) -> str:
        return f"{self.name}-{self.version}.tgz"

    def refusal(self, data: bytes) -> str | None:
        """None when the archive `data` holds this chart as pinned, else what it holds instead."""
        if "sha256:" + hashlib.sha256(data).hexdigest() in self.archive_digests:
            return None
        try:
            digest = content_digest(data)
        except ChartContentError as exc:
            return f"it is not a chart archive ({exc})"
        return None if digest == self.content_digest else f"it holds {digest}"

    def refused(self, source: str, why: str) -> str:
        """The start of the one line that refuses an archive: chart, version, expected, where from."""
        return (
            f"chart {self.name} {self.version} from {source} is not the one pinned in {LOCK_NAME}: "
            f"expected content digest {self.content_digest}, {why}"
        )


@functools.cache
def lock() -> dict[tuple[str, str], ChartPin]:
    """The pinned charts of components/charts-lock.json, by (name, version)."""
    raw = json.loads(LOCK_FILE.read_text())
    pins = [
        ChartPin(
            str(c["name"]),
            str(c["version"]),
            str(c["repository"]),
            str(c["contentDigest"]),
            tuple(str(d) for d in c.get("archiveDigests", ())),
        )
        for c in raw["charts"]
    ]
    return {(p.name, p.version): p for p in pins}


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "airflow-k8s" / "charts"


def local_dirs(root: Path) -> list[Path]:
    """The folders of local archives: $AIRFLOW_K8S_CHARTS first, then ../shared/charts."""
    dirs = []
    configured = os.environ.get(CHARTS_ENV)
    if configured:
        dirs.append(Path(configured))
    dirs.append(root.resolve().parent / "shared" / "charts")
    return dirs


def chart_dirs(root: Path) -> list[Path]:
    """Every folder an archive is looked for in: the local folders, then the cache."""
    return [*local_dirs(root), cache_dir()]


def _chart_path(root: Path, chart: str) -> Path | None:
    """A chart given as a path (a .tgz or a folder), resolved against the project; None for a name."""
    candidate = Path(chart)
    if candidate.suffix == ".tgz" or "/" in chart or candidate.is_dir() or (root / candidate).is_dir():
        return candidate if candidate.is_absolute() else root / candidate
    return None


def find_chart(root: Path, chart: str, version: str | None) -> Path:
    """The archive of `chart` at `version` already on this machine (a local folder or the cache),
    or the chart path as given; nothing is fetched (see `resolve`)."""
    path = _chart_path(root, chart)
    if path is not None:
        if path.exists():
            return path
        raise ChartNotFoundError(f"chart path {chart!r} does not exist (looked for {path})")
    wanted = f"{chart}-{version}.tgz" if version else f"{chart}-*.tgz"
    dirs = chart_dirs(root)
    for directory in dirs:
        matches = sorted(directory.glob(wanted))
        if matches:
            return matches[-1]
    raise ChartNotFoundError(
        f"chart archive {wanted} not found; looked in: {', '.join(str(d) for d in dirs)} "
        f"(set {CHARTS_ENV} to a folder holding it)"
    )


def all_archives(root: Path) -> list[Path]:
    """Every archive on this machine, each name once (the first folder's)."""
    seen: dict[str, Path] = {}
    for directory in chart_dirs(root):
        for path in sorted(directory.glob("*.tgz")):
            seen.setdefault(path.name, path)
    return list(seen.values())


def at_hand(root: Path) -> bool:
    """Is every pinned chart already on this machine (so that nothing will be fetched)?"""
    dirs = chart_dirs(root)
    return all(any((d / pin.archive).is_file() for d in dirs) for pin in lock().values())


# --------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class Wanted:
    """A chart a Release installs: its name, pinned version and repository URL."""

    name: str
    version: str | None
    repository: str | None


@dataclass(frozen=True)
class _Missing:
    wanted: Wanted
    reason: str
    repository: str | None  # where it was looked for, when it was


def resolve(
    root: Path, charts: list[Wanted], echo: Callable[[str], None] | None = None
) -> dict[tuple[str, str | None], Path]:
    """The archive of every chart, fetched into the cache where none is on this machine; each
    archive of a pinned chart checked against the lock. Raises one ChartNotFoundError (one line)
    for all the charts that could not be had, or ChartDigestError for a refused archive."""
    unique = list(dict.fromkeys(charts))
    found: dict[tuple[str, str | None], Path] = {}
    missing: list[_Missing] = []
    to_fetch: list[tuple[Wanted, ChartPin]] = []
    for wanted in unique:
        local = _local(root, wanted)
        if local is not None:
            found[(wanted.name, wanted.version)] = local
            continue
        pin = lock().get((wanted.name, wanted.version or ""))
        if pin is None:
            missing.append(_Missing(wanted, f"not pinned in {LOCK_NAME}, so not fetched", None))
        else:
            to_fetch.append((wanted, pin))
    if to_fetch:
        with ThreadPoolExecutor(max_workers=len(to_fetch)) as pool:
            results = list(pool.map(lambda item: _fetch_or_reason(item[0], item[1], echo), to_fetch))
        for (wanted, _), result in zip(to_fetch, results, strict=True):
            if isinstance(result, Path):
                found[(wanted.name, wanted.version)] = result
            else:
                missing.append(result)
    if missing:
        missing.sort(key=lambda m: unique.index(m.wanted))
        raise ChartNotFoundError(_missing_message(missing))
    return found


def _local(root: Path, wanted: Wanted) -> Path | None:
    """The archive on this machine, checked against the lock; None when there is none. A cached
    archive that fails the check is dropped (it is fetched again); a local one is refused."""
    if _chart_path(root, wanted.name) is not None or not wanted.version:
        return find_chart(root, wanted.name, wanted.version)  # a path, or any version: as it is
    pin = lock().get((wanted.name, wanted.version))
    for directory in local_dirs(root):
        path = directory / f"{wanted.name}-{wanted.version}.tgz"
        if path.is_file():
            why = pin.refusal(path.read_bytes()) if pin is not None else None
            if pin is not None and why is not None:
                raise ChartDigestError(
                    f"{pin.refused(str(path), why)}. Replace it with the archive {pin.repository} publishes, "
                    "or remove it (the preview then fetches the pinned one)"
                )
            return path
    cached = cache_dir() / f"{wanted.name}-{wanted.version}.tgz"
    if cached.is_file():
        if pin is None or pin.refusal(cached.read_bytes()) is None:
            return cached
        cached.unlink()
    return None


def _fetch_or_reason(wanted: Wanted, pin: ChartPin, echo: Callable[[str], None] | None) -> Path | _Missing:
    repository = os.environ.get(REPOSITORY_ENV) or wanted.repository or pin.repository
    try:
        return fetch(pin, repository, echo)
    except ChartDigestError:
        raise
    except _UnreachableError as exc:
        return _Missing(wanted, str(exc), repository)


class _UnreachableError(Exception):
    """The repository could not be read, or does not list the chart at that version."""


def _get(url: str) -> bytes:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise _UnreachableError(f"{scheme}:// repositories are not read by the preview")
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise _UnreachableError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        text = str(getattr(reason, "strerror", None) or reason)
        raise _UnreachableError(text[:1].lower() + text[1:]) from None


def fetch(pin: ChartPin, repository: str, echo: Callable[[str], None] | None = None) -> Path:
    """Download `pin` from `repository` (its index.yaml, then the archive it lists) into the
    cache, after checking that it holds the pinned content."""
    base = repository.rstrip("/") + "/"
    if echo:
        echo(f"... fetching chart {pin.name} {pin.version} from {repository} (not on this machine)")
    try:
        index = yaml.load(_get(base + "index.yaml"), Loader=_Loader)
    except yaml.YAMLError:
        raise _UnreachableError(f"{base}index.yaml is not a chart repository index") from None
    entries = (index or {}).get("entries", {}).get(pin.name) if isinstance(index, dict) else None
    entry = next((e for e in entries or [] if str(e.get("version")) == pin.version), None)
    if not entry or not entry.get("urls"):
        raise _UnreachableError(f"{repository} does not list {pin.name} {pin.version}")
    url = urllib.parse.urljoin(base, str(entry["urls"][0]))
    data = _get(url)
    why = pin.refusal(data)
    if why is not None:
        raise ChartDigestError(f"{pin.refused(url, why)}; refused, and not cached")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target, prefix=f".{pin.archive}.", delete=False) as handle:
        handle.write(data)
    path = target / pin.archive
    os.replace(handle.name, path)
    if echo:
        echo(f"    {pin.archive}: content as pinned, cached in {target}")
    return path


def _missing_message(missing: list[_Missing]) -> str:
    """One line: which charts at which versions, why, and the two ways to provide them."""
    groups: dict[tuple[str | None, str], list[str]] = {}
    for m in missing:
        groups.setdefault((m.repository, m.reason), []).append(f"{m.wanted.name} {m.wanted.version}")

    def why(repository: str | None, reason: str) -> str:
        return f"could not be fetched from {repository} ({reason})" if repository else reason

    noun = "chart" if len(missing) == 1 else "charts"
    if len(groups) == 1:
        ((repository, reason), names) = next(iter(groups.items()))
        verb = "is" if len(missing) == 1 else "are"
        what = f"{noun} {', '.join(names)} {verb} not on this machine and {why(repository, reason)}"
    else:
        what = f"{noun} not on this machine: " + "; ".join(
            f"{', '.join(names)} {why(repository, reason)}" for (repository, reason), names in groups.items()
        )
    archives = ", ".join(f"{m.wanted.name}-{m.wanted.version}.tgz" for m in missing)
    them = "it" if len(missing) == 1 else "them"
    ways = f"put {archives} in a folder and set {CHARTS_ENV} to that folder (or put {them} in {_home(cache_dir())})"
    repositories = list(dict.fromkeys(m.repository for m in missing if m.repository))
    if repositories:
        ways += f", or allow network access to {', '.join(repositories)} ({REPOSITORY_ENV} can name a mirror)"
    if any(m.repository is None for m in missing):
        ways += f", or pin the version in {LOCK_NAME} (name, version, repository, contentDigest)"
    return f"{what}. Either {ways}."


def _home(path: Path) -> str:
    try:
        return "~/" + path.resolve().relative_to(Path.home().resolve()).as_posix()
    except ValueError:
        return str(path)
