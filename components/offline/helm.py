"""The Helm that deploys: the `helm` v3 binary, and the capabilities of the target cluster.

`pulumi-resource-kubernetes` 4.32.0 installs a `helm.v3.Release` with the Helm v3.20.2 Go
library, against the live cluster: `.Capabilities.KubeVersion` is the server's version,
`.Capabilities.APIVersions` what its discovery lists (built-in APIs and installed CRDs), and
`.Release.IsUpgrade` is true when the release already exists. The offline preview renders
with the same Helm (`helm template`) and hands it those capabilities explicitly.

Where the binary comes from, first found wins:

1. `$AIRFLOW_K8S_HELM` (a path to a helm v3.20 binary);
2. `helm` on PATH, if it is v3.20 (any patch: a `go install`ed Helm says just "v3.20");
3. the project's toolchain: `../shared/tools/helm-tools.tar.xz` unpacked alone into the cache
   (checked and stamped as `install.sh` does), else `../shared/tools/install.sh`, which
   unpacks every archive and prints its bin folder;
4. the tools cache (`$AIRFLOW_K8S_TOOLS_CACHE`, default `~/.cache/airflow-k8s-tools`) `bin/helm`;
5. `go install helm.sh/helm/v3/cmd/helm@v3.20.2` into that cache (a few minutes, once, with a
   progress line every 15 seconds); the cache's binary is found by step 4 after that.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

HELM_VERSION = "v3.20.2"
HELM_MODULE = "helm.sh/helm/v3"
#: The Helm minor release accepted (the Go library of pulumi-resource-kubernetes 4.32.0).
HELM_SERIES = "v3.20"
DEFAULT_KUBE_VERSION = "1.31"
#: Seconds between the progress lines of a `go install` of Helm.
BUILD_PROGRESS_EVERY = 15.0


def in_series(version: str | None) -> bool:
    """Is `version` (what `helm version --template {{.Version}}` prints) a Helm v3.20?

    A release build says "v3.20.2"; a `go install`ed one says "v3.20" (Helm's version
    variable without the patch number the release build stamps in), or "v3.20+unreleased"."""
    return bool(version) and re.match(rf"^{re.escape(HELM_SERIES)}(?:$|[.+-])", str(version)) is not None


class HelmNotFoundError(RuntimeError):
    """No usable helm v3.20 binary, and none could be built: says what was tried."""


def _version_of(binary: str) -> str | None:
    try:
        out = subprocess.run(
            [binary, "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def tools_cache() -> Path:
    return Path(os.environ.get("AIRFLOW_K8S_TOOLS_CACHE") or Path.home() / ".cache" / "airflow-k8s-tools")


def _from_helm_archive(root: Path) -> str | None:
    """Unpack only `helm-tools.tar.xz` of ../shared/tools into the tools cache, the way its
    install.sh does (sum checked against SHA256SUMS, the same stamp file, so install.sh
    reuses it): the preview needs helm alone, not the 140 MB of Pulumi and cluster tools."""
    tools = root.resolve().parent / "shared" / "tools"
    archive, sums = tools / "helm-tools.tar.xz", tools / "SHA256SUMS"
    if not archive.is_file() or not sums.is_file():
        return None
    expected = next(
        (line.split()[0] for line in sums.read_text().splitlines() if line.endswith(" " + archive.name)), ""
    )
    cache = tools_cache()
    stamp = cache / f".{archive.name}.sha256"
    helm = cache / "bin" / "helm"
    if stamp.is_file() and stamp.read_text().strip() == expected and helm.is_file():
        return str(helm)
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not expected or digest.hexdigest() != expected:
        return None  # install.sh reports the mismatch
    print(f"unpacking {archive.name} (helm {HELM_VERSION}) into {cache / 'bin'}", file=sys.stderr, flush=True)
    (cache / "bin").mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    stamp.write_text(expected + "\n")
    return str(helm) if helm.is_file() else None


def _from_install_script(root: Path) -> str | None:
    script = root.resolve().parent / "shared" / "tools" / "install.sh"
    if not script.is_file():
        return None
    # Its progress ("unpacking ...") goes to the user's stderr; stdout is the bin folder.
    out = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        return None
    lines = out.stdout.strip().splitlines()
    candidate = Path(lines[-1]) / "helm" if lines else None
    return str(candidate) if candidate and candidate.is_file() else None


def _go_install(tried: list[str]) -> str:
    go = shutil.which("go")
    every = BUILD_PROGRESS_EVERY
    target = tools_cache() / "bin"
    if not go:
        raise HelmNotFoundError(
            f"no helm {HELM_VERSION} found (tried: {'; '.join(tried)}), and no `go` to build it. Install helm "
            f"{HELM_VERSION} on PATH, set AIRFLOW_K8S_HELM to its path, or install Go and re-run "
            f"(it runs `go install {HELM_MODULE}/cmd/helm@{HELM_VERSION}`)."
        )
    target.mkdir(parents=True, exist_ok=True)
    command = [go, "install", "-v", f"{HELM_MODULE}/cmd/helm@{HELM_VERSION}"]
    say(
        f"building helm {HELM_VERSION} with `go install {HELM_MODULE}/cmd/helm@{HELM_VERSION}` into {target} "
        f"(a few minutes, once; progress every {every:g} s)"
    )
    env = {**os.environ, "GOBIN": str(target), "CGO_ENABLED": "0"}
    returncode, tail = _run_with_progress(command, env, every)
    if returncode != 0:
        raise HelmNotFoundError(f"`go install {HELM_MODULE}/cmd/helm@{HELM_VERSION}` failed: {tail[-1500:]}")
    say(f"built helm {HELM_VERSION} into {target}")
    return str(target / "helm")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run_with_progress(command: list[str], env: dict[str, str], every: float) -> tuple[int, str]:
    """Run `go install -v`, printing a line every `every` seconds: the time so far, the modules
    downloaded and the packages compiled (go prints one line per package with -v). Returns the
    exit code and the end of go's output (for the error)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace"
    )
    assert process.stdout is not None
    lines: list[str] = []
    counts = {"downloaded": 0, "compiled": 0}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            del lines[:-40]
            counts["downloaded" if line.startswith("go: downloading ") else "compiled"] += 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    while True:
        try:
            process.wait(timeout=every)
            break
        except subprocess.TimeoutExpired:
            say(
                f"  ... building helm: {time.monotonic() - started:.0f} s, {counts['downloaded']} modules downloaded, "
                f"{counts['compiled']} packages compiled"
            )
    reader.join()
    return process.returncode, "".join(lines)


PROJECT_ROOT = Path(__file__).resolve().parents[2]


_LOOKUP = threading.Lock()


def helm_binary(root: Path = PROJECT_ROOT) -> str:
    """The path of a helm v3.20 binary (see the module docstring for where it is looked for);
    looked for once per process, by one thread (charts render side by side)."""
    with _LOOKUP:
        return _helm_binary(root)


@functools.cache
def _helm_binary(root: Path) -> str:
    tried: list[str] = []
    configured = os.environ.get("AIRFLOW_K8S_HELM")
    if configured:
        version = _version_of(configured)
        if version and version.startswith("v3."):
            return configured
        raise HelmNotFoundError(f"AIRFLOW_K8S_HELM={configured} is not a helm v3 binary (its version: {version})")
    on_path = shutil.which("helm")
    if on_path:
        version = _version_of(on_path)
        if in_series(version):
            return on_path
        tried.append(f"PATH: {on_path} is {version or 'not runnable'}, not {HELM_SERIES}")
    else:
        tried.append("PATH: no helm")
    for where, find in (
        ("../shared/tools/helm-tools.tar.xz", _from_helm_archive),
        ("../shared/tools/install.sh", _from_install_script),
        ("cache", lambda _root: str(tools_cache() / "bin" / "helm")),
    ):
        candidate = find(root)
        if candidate and Path(candidate).is_file():
            version = _version_of(candidate)
            if in_series(version):
                return candidate
            tried.append(f"{where}: {candidate} is {version or 'not runnable'}")
        else:
            tried.append(f"{where}: none")
    return _go_install(tried)


# --------------------------------------------------------------------------- capabilities


def normalize_kube_version(version: str) -> str:
    """ "1.31" -> "1.31.0" (what a server reports has a patch number); "v1.34.4" -> "1.34.4"."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", str(version).strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return f"{match[1]}.{match[2]}.{match[3] or 0}"


_SCHEMA_DIR = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-local$")


@functools.cache
def builtin_api_versions(kube_version: str) -> tuple[str, ...]:
    """The API versions Kubernetes `kube_version` serves by default, as discovery lists them to
    Helm: `group/version` and `group/version/Kind`, from the OpenAPI definitions of that release
    (those kubernetes-validate ships; the closest older one when it has none). Alpha versions,
    which a server serves only when switched on, are left out."""
    wanted = tuple(int(p) for p in normalize_kube_version(kube_version).split(".")[:2])
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    shipped = {}
    for entry in root.iterdir():
        m = _SCHEMA_DIR.match(entry.name)
        if m:
            shipped[(int(m[1]), int(m[2]))] = entry.name
    if not shipped:
        raise RuntimeError("kubernetes-validate ships no schemas")
    older = [v for v in sorted(shipped) if v <= wanted]
    chosen = shipped[older[-1] if older else min(shipped)]
    definitions = json.loads(root.joinpath(chosen, "_definitions.json").read_text())["$defs"]
    found: set[str] = set()
    for name, schema in definitions.items():
        if name.startswith("io.k8s.apimachinery."):
            continue  # meta types (DeleteOptions, WatchEvent, ...) listed under every group
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            kind, version, group = gvk.get("kind", ""), gvk.get("version", ""), gvk.get("group", "")
            if not kind or kind.endswith("List") or "alpha" in version:
                continue
            gv = f"{group}/{version}" if group else version
            found.update((gv, f"{gv}/{kind}"))
    return tuple(sorted(found))


def crd_api_versions(crds: list[dict[str, Any]]) -> set[str]:
    """What installing these CustomResourceDefinitions adds to discovery: every served version
    as `group/version` and `group/version/Kind`."""
    found: set[str] = set()
    for crd in crds:
        spec = crd.get("spec")
        if not isinstance(spec, dict):
            continue
        group = spec.get("group")
        kind = (spec.get("names") or {}).get("kind")
        for version in spec.get("versions") or []:
            if isinstance(version, dict) and version.get("served", True) and group and kind:
                found.update((f"{group}/{version['name']}", f"{group}/{version['name']}/{kind}"))
    return found


@dataclass(frozen=True)
class Capabilities:
    """What `helm template` is told about the target cluster.

    `api_versions` is what the cluster's discovery would list (Helm also always adds the
    built-in `group/version` entries its own client library knows)."""

    kube_version: str = DEFAULT_KUBE_VERSION
    api_versions: frozenset[str] = field(default_factory=frozenset)
    is_upgrade: bool = False

    @classmethod
    def for_cluster(
        cls,
        kube_version: str = DEFAULT_KUBE_VERSION,
        extra: set[str] | frozenset[str] = frozenset(),
        *,
        is_upgrade: bool = False,
    ) -> Capabilities:
        """Kubernetes `kube_version`'s built-in APIs plus `extra` (CRDs installed or declared)."""
        version = normalize_kube_version(kube_version)
        return cls(version, frozenset(builtin_api_versions(version)) | frozenset(extra), is_upgrade)

    def upgrade(self, is_upgrade: bool = True) -> Capabilities:
        return Capabilities(self.kube_version, self.api_versions, is_upgrade)

    def helm_args(self) -> list[str]:
        args = ["--kube-version", normalize_kube_version(self.kube_version)]
        if self.api_versions:
            args += ["--api-versions", ",".join(sorted(self.api_versions))]
        if self.is_upgrade:
            args.append("--is-upgrade")
        return args
