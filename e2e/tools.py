"""The binaries the end-to-end run needs, looked for in this order:

1. `PATH` (a CI image with official releases), used as it is;
2. the prebuilt toolchains beside the repository (`../shared/tools/install.sh`, which
   unpacks them once into its cache and prints the bin folder);
3. that cache's bin folder (`$AIRFLOW_K8S_TOOLS_CACHE`, default `~/.cache/airflow-k8s-tools`)
   when the install script is not there;
4. this harness's own build cache (`<cache>/bin`, reused when its version stamp matches);
5. a build with the ordinary Go client from the Go module proxy, at a pinned version,
   inside a throwaway module in the cache folder (never in the repository):

       <cache>/src/<tool>/go.mod   require <module> <version>  (+ replace directives)
       <cache>/bin/<tool>          the result, reused on the next run

The two Pulumi providers cannot be built that way (see `GoTool.unbuildable`). A tool
that cannot be had comes back `missing`, with every place looked at and why it failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Pins. The Pulumi pieces match the Python SDKs pinned in requirements.txt.
PULUMI_VERSION = "v3.259.0"  # pulumi==3.259.0
PULUMI_KUBERNETES_VERSION = "v4.32.0"  # pulumi-kubernetes==4.32.0
PULUMI_RANDOM_VERSION = "v4.21.1"  # pulumi-random==4.21.1
KUBERNETES_VERSION = "v1.34.4"  # kube-apiserver, kube-controller-manager, kube-scheduler
ETCD_VERSION = "v3.6.5"
KWOK_VERSION = "v0.8.0"

# k8s.io/kubernetes replaces its staging modules with ./staging/src/k8s.io/<name>; outside
# its own tree each one is the published k8s.io/<name> module at v0.<minor>.<patch>.
_STAGING_REPLACE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/src/k8s\.io/[\w.-]+\s*$")
# etcd's server module replaces its sibling modules with ../<dir>; outside the tree they
# are the published go.etcd.io/etcd/<name>/v3 modules at the same version.
_SIBLING_REPLACE = re.compile(r"^\s*(go\.etcd\.io/etcd/[\w./-]+)\s*=>\s*\.\./[\w./-]+\s*$")


class ToolError(RuntimeError):
    """A tool could not be found or built: names the command and its error."""


@dataclass(frozen=True)
class GoTool:
    """A binary built from a Go package at a pinned module version."""

    name: str
    module: str
    version: str
    package: str
    # Further modules to require at a pinned version (for example the SDK next to the CLI).
    requires: tuple[tuple[str, str], ...] = ()
    # Turns the module's own (local-path) replace directives into module-version ones.
    replaces: Callable[[str, str], list[str]] | None = None
    tags: tuple[str, ...] = ()
    ldflags: str = "-s -w"
    # Files a release ships next to the binary, taken from a module: (module, version, path).
    companions: tuple[tuple[str, str, str], ...] = field(default=())
    # Why a build from the Go module proxy cannot produce a working binary ("" when it can).
    unbuildable: str = ""


# A provider's `go:embed`s its schema (`schema-embed.json`), which the provider's own
# Makefile generates before `go build`; the file is not committed, so no module zip on the
# proxy holds it, and `go build` of the module stops at the embed pattern.
_PROVIDER_FROM_PROXY = (
    "a build from the Go module proxy cannot work: the module zip lacks the generated "
    "schema-embed.json that the provider embeds (its Makefile generates it from a checkout "
    "of the repository before `go build`). Use an official release or ../shared/tools."
)


def _replaces(pattern: re.Pattern[str], gomod: str, version: str) -> list[str]:
    """`module => module version` for each module of go.mod that `pattern` matches."""
    return [f"{m.group(1)} => {m.group(1)} {version}" for m in map(pattern.match, gomod.splitlines()) if m]


def _staging_replaces(gomod: str, version: str) -> list[str]:
    return _replaces(_STAGING_REPLACE, gomod, "v0." + version.removeprefix("v1."))


def _sibling_replaces(gomod: str, version: str) -> list[str]:
    return _replaces(_SIBLING_REPLACE, gomod, version)


def _kube(name: str) -> GoTool:
    return GoTool(
        name=name,
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        package=f"k8s.io/kubernetes/cmd/{name}",
        replaces=_staging_replaces,
        ldflags=(
            "-s -w"
            f" -X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}"
            f" -X k8s.io/component-base/version.gitMajor=1"
            f" -X k8s.io/component-base/version.gitMinor={KUBERNETES_VERSION.split('.')[1]}"
            " -X k8s.io/component-base/version.gitTreeState=clean"
        ),
    )


TOOLS: dict[str, GoTool] = {
    tool.name: tool
    for tool in (
        GoTool(
            name="pulumi",
            module="github.com/pulumi/pulumi/pkg/v3",
            version=PULUMI_VERSION,
            package="github.com/pulumi/pulumi/pkg/v3/cmd/pulumi",
            requires=(("github.com/pulumi/pulumi/sdk/v3", PULUMI_VERSION),),
            ldflags=f"-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={PULUMI_VERSION}",
        ),
        GoTool(
            name="pulumi-language-python",
            module="github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3",
            version=PULUMI_VERSION,
            package="github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3",
            requires=(("github.com/pulumi/pulumi/sdk/v3", PULUMI_VERSION),),
            # The language host runs programs through this shim, found next to itself.
            companions=(("github.com/pulumi/pulumi/sdk/v3", PULUMI_VERSION, "python/cmd/pulumi-language-python-exec"),),
            ldflags=f"-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version={PULUMI_VERSION}",
        ),
        GoTool(
            name="pulumi-resource-kubernetes",
            module="github.com/pulumi/pulumi-kubernetes/provider/v4",
            version=PULUMI_KUBERNETES_VERSION,
            package="github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes",
            ldflags=(
                "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version="
                + PULUMI_KUBERNETES_VERSION
            ),
            unbuildable=_PROVIDER_FROM_PROXY,
        ),
        GoTool(
            name="pulumi-resource-random",
            module="github.com/pulumi/pulumi-random/provider/v4",
            version=PULUMI_RANDOM_VERSION,
            package="github.com/pulumi/pulumi-random/provider/v4/cmd/pulumi-resource-random",
            # The provider reads its version from provider/v4/pkg/version; stamped anywhere
            # else it stays empty and the provider panics at start.
            ldflags=(
                "-s -w -X github.com/pulumi/pulumi-random/provider/v4/pkg/version.Version=" + PULUMI_RANDOM_VERSION
            ),
            unbuildable=_PROVIDER_FROM_PROXY,
        ),
        _kube("kube-apiserver"),
        _kube("kube-controller-manager"),
        _kube("kube-scheduler"),
        _kube("kubelet"),
        _kube("kube-proxy"),
        GoTool(
            name="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=ETCD_VERSION,
            package="go.etcd.io/etcd/server/v3",
            replaces=_sibling_replaces,
        ),
        GoTool(
            name="kwok",
            module="sigs.k8s.io/kwok",
            version=KWOK_VERSION,
            package="sigs.k8s.io/kwok/cmd/kwok",
            ldflags=f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION}",
        ),
    )
}

PULUMI_TOOLS = ("pulumi", "pulumi-language-python", "pulumi-resource-kubernetes", "pulumi-resource-random")
CLUSTER_TOOLS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
NODE_TOOLS = ("kubelet", "kube-proxy")  # the real node's (e2e.node); containerd and runc are Debian's


def default_cache() -> Path:
    explicit = os.environ.get("AIRFLOW_K8S_E2E_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "airflow-k8s-e2e"


def _run(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ (cd {cwd} && {' '.join(cmd)})\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ToolError(f"`{' '.join(cmd)}` (in {cwd}) exited {proc.returncode}:\n{tail}")


def _go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CGO_ENABLED", "0")
    # Two cores shared with other work: one package at a time unless told otherwise.
    env.setdefault("GOFLAGS", "-p=1")
    env["GOFLAGS"] = env["GOFLAGS"] + " -mod=mod"
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def build(tool: GoTool, cache: Path) -> Path:
    """Build `tool` into <cache>/bin from a temporary module; return the binary's path."""
    go = shutil.which("go")
    if go is None:
        raise ToolError(f"{tool.name}: `go` is not on PATH (Go 1.24 or newer is needed to build it).")
    src = cache / "src" / tool.name
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    log = cache / "logs" / f"build-{tool.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    env = _go_env(cache)
    (src / "go.mod").write_text("module airflowk8se2ebuild\n\ngo 1.24\n")
    _run([go, "mod", "download", "-json", f"{tool.module}@{tool.version}"], src, env, log)
    lines = ["module airflowk8se2ebuild", "", "go 1.24", "", "require ("]
    lines.append(f"\t{tool.module} {tool.version}")
    lines += [f"\t{mod} {ver}" for mod, ver in tool.requires]
    lines.append(")")
    if tool.replaces is not None:
        gomod = _module_gomod(go, tool, src, env)
        lines += ["", "replace ("] + [f"\t{r}" for r in tool.replaces(gomod, tool.version)] + [")"]
    (src / "go.mod").write_text("\n".join(lines) + "\n")
    # A main package that only imports the target would be a fake; build the target itself.
    _run([go, "get", f"{tool.package}@{tool.version}"], src, env, log)
    binary = cache / "bin" / tool.name
    binary.parent.mkdir(parents=True, exist_ok=True)
    cmd = [go, "build", "-trimpath", "-ldflags", tool.ldflags, "-o", str(binary) + ".tmp"]
    if tool.tags:
        cmd += ["-tags", ",".join(tool.tags)]
    _run([*cmd, tool.package], src, env, log)
    os.replace(str(binary) + ".tmp", binary)
    for module, version, path in tool.companions:
        source = _module_dir(go, module, version, src, env) / path
        target = binary.parent / Path(path).name
        shutil.copyfile(source, target)
        target.chmod(0o755)
    (cache / "bin" / f"{tool.name}.version").write_text(f"{tool.module}@{tool.version}\n")
    return binary


def _download(go: str, module: str, version: str, src: Path, env: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    info: dict[str, str] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0 or "Error" in info:
        raise ToolError(f"`go mod download -json {module}@{version}` failed: {info.get('Error') or proc.stderr}")
    return info


def _module_gomod(go: str, tool: GoTool, src: Path, env: dict[str, str]) -> str:
    return Path(_download(go, tool.module, tool.version, src, env)["GoMod"]).read_text()


def _module_dir(go: str, module: str, version: str, src: Path, env: dict[str, str]) -> Path:
    return Path(_download(go, module, version, src, env)["Dir"])


def module_dir(module: str, version: str, cache: Path, purpose: str) -> Path:
    """The source folder of `module@version`, downloaded into Go's module cache by the Go client."""
    go = shutil.which("go")
    if go is None:
        raise ToolError(f"`go` is needed to fetch {purpose} (module {module})")
    work = cache / "src" / "modules"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "go.mod").exists():
        (work / "go.mod").write_text("module airflowk8se2emodules\n\ngo 1.24\n")
    return _module_dir(go, module, version, work, _go_env(cache))


@dataclass
class Resolved:
    name: str
    path: Path | None
    origin: str  # "PATH", "shared tools", "tools cache", "cache", "built", or "missing"
    seconds: float = 0.0
    error: str = ""


SHARED_TOOLS = Path(__file__).resolve().parent.parent.parent / "shared" / "tools"
# The files a binary needs beside it to work: the Python language host runs programs
# through its `-exec` shim, which it looks for next to its own executable.
COMPANIONS = {"pulumi-language-python": ("pulumi-language-python-exec",)}


def shared_tools_script() -> Path:
    return Path(os.environ.get("AIRFLOW_K8S_SHARED_TOOLS") or SHARED_TOOLS) / "install.sh"


def tools_cache_bin() -> Path:
    """Where ../shared/tools/install.sh unpacks to (its own default, or $AIRFLOW_K8S_TOOLS_CACHE)."""
    explicit = os.environ.get("AIRFLOW_K8S_TOOLS_CACHE")
    base = Path(explicit).expanduser() if explicit else Path.home() / ".cache" / "airflow-k8s-tools"
    return base / "bin"


_installed: dict[Path, tuple[Path | None, str]] = {}


def install_shared_tools(script: Path | None = None) -> tuple[Path | None, str]:
    """Run the install script once per process: (its bin folder, "") or (None, why not)."""
    script = script or shared_tools_script()
    if script in _installed:
        return _installed[script]
    if not script.is_file():
        result: tuple[Path | None, str] = (None, f"{script} does not exist")
    else:
        try:
            proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
        except OSError as exc:
            _installed[script] = (None, f"`bash {script}` could not run: {exc}")
            return _installed[script]
        out = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not out:
            result = (None, f"`{script}` exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        else:
            result = (Path(out[-1]), "")
    _installed[script] = result
    return result


def unusable(name: str, binary: Path) -> str:
    """Why `binary` cannot be used as `name` ("" when it can): a missing companion file, or
    a `<name>.version` stamp beside it naming another version than the pin."""
    tool = TOOLS[name]
    for companion in COMPANIONS.get(name, ()):
        if not (binary.parent / companion).is_file():
            return f"{binary} has no {companion} beside it (the language host runs programs through it)"
    stamp = binary.parent / f"{name}.version"
    if stamp.is_file():
        # `<module>@<version>`, perhaps followed by the package built from it (`... cmd/kubelet`)
        stamped = (stamp.read_text().split() or [""])[0]
        if stamped != f"{tool.module}@{tool.version}":
            return f"{binary} is {stamped}, not the pinned {tool.module}@{tool.version}"
    return ""


def resolve(name: str, cache: Path, build_missing: bool = True, shared: bool = True) -> Resolved:
    """PATH, then ../shared/tools (install.sh), then its cache, then <cache>/bin, then a build."""
    tool = TOOLS[name]
    tried: list[str] = []

    def candidate(origin: str, binary: Path | None) -> Resolved | None:
        if binary is None or not binary.is_file():
            tried.append(f"{origin}: no {name}" + (f" in {binary.parent}" if binary is not None else ""))
            return None
        why = unusable(name, binary)
        if why:
            tried.append(f"{origin}: {why}")
            return None
        return Resolved(name, binary, origin)

    on_path = shutil.which(name)
    found = candidate("PATH", Path(on_path) if on_path else None)
    if found:
        return found
    if shared:
        bin_dir, why = install_shared_tools()
        if bin_dir is None:
            tried.append(f"shared tools: {why}")
        elif found := candidate("shared tools", bin_dir / name):
            return found
        if bin_dir is None and (found := candidate("tools cache", tools_cache_bin() / name)):
            return found
    binary = cache / "bin" / name
    stamp = cache / "bin" / f"{name}.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == f"{tool.module}@{tool.version}":
        return Resolved(name, binary, "cache")
    tried.append(f"cache: no {name} at {tool.version} in {cache / 'bin'}")
    if tool.unbuildable:
        tried.append(f"build: {tool.unbuildable}")
        return Resolved(name, None, "missing", error="\n".join(tried))
    if not build_missing:
        return Resolved(name, None, "missing", error="\n".join(tried))
    start = time.monotonic()
    try:
        path = build(tool, cache)
    except (ToolError, subprocess.CalledProcessError) as exc:
        tried.append(f"build: {exc}")
        return Resolved(name, None, "missing", time.monotonic() - start, "\n".join(tried))
    return Resolved(name, path, "built", time.monotonic() - start)
