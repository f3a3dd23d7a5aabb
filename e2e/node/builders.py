"""How each image's root file system is made (the recipes in recipes.py name these).

Each build function fills `ctx.rootfs` and returns the image config (user, environment,
entrypoint) that the runtime applies. Conventions of the official images that the rendered
pod specs rely on are kept (paths, users, entrypoints); what differs is listed in
docs/images.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from e2e.node import debian
from e2e.node.oci import ImageConfig

PATH = debian.PATH


@dataclass
class Context:
    """One image build: its scratch folder, the shared caches and the progress echo."""

    label: str  # the reference being built, for progress lines
    cache: Path
    repo: Path
    work: Path
    log: Path
    echo: Callable[[str], None]
    uv: Callable[[], Path]  # the uv binary (found or installed on first use)

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.echo(f"  {self.label}: {what} ({time.monotonic() - started:.1f} s)")

    def empty(self) -> Path:
        shutil.rmtree(self.rootfs, ignore_errors=True)
        for folder in ("etc", "tmp", "proc", "dev", "sys"):
            (self.rootfs / folder).mkdir(parents=True, exist_ok=True)
        (self.rootfs / "tmp").chmod(0o1777)
        return self.rootfs

    def debian_base(self, packages: tuple[str, ...] = (), suite: str = debian.SUITE) -> Path:
        with self.step(f"Debian base ({suite})"):
            base = debian.base(self.cache, self.log, suite)
        with self.step("copy of the base"):
            debian.copy_tree(base, self.rootfs)
            debian.with_network(self.rootfs)
        if packages:
            with self.step(f"apt-get install {' '.join(packages)}"):
                debian.apt_install(self.rootfs, packages, self.cache / "apt-archives", self.log)
        return self.rootfs

    def in_root(self, script: str, binds: tuple[tuple[Path, str], ...] = ()) -> None:
        debian.in_root(self.rootfs, script, self.log, binds=binds)

    def file(self, relative: str) -> Path:
        return self.repo / relative

    def go_binary(self, module_version: str, ldflags: str = "") -> Path:
        """`go install` of a Go module at a version (CGO off, static), cached by module@version."""
        module, _, version = module_version.partition("@")
        name = module.rstrip("/").rsplit("/", 1)[-1]
        folder = self.cache / "go" / f"{module.replace('/', '_')}@{version}"
        binary = folder / name
        if binary.is_file():
            return binary
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        go, env = _go(module_version, GOBIN=str(partial))
        with self.step(f"go install {module_version}"):
            cmd = [go, "install", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(), module_version]
            debian.run_logged(cmd, self.log, env)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        return binary

    def go_build(
        self,
        module_version: str,
        package: str,
        name: str,
        ldflags: str = "",
        tags: tuple[str, ...] = (),
        nested: tuple[str, ...] = (),
    ) -> Path:
        """`go build` of `package` (a folder of the module, ./cmd/x) inside the source of a Go
        module fetched from the Go module proxy (`go mod download`), CGO off, static; cached by
        module@version and `name` (the binary's). For modules whose go.mod has `replace`
        directives, which `go install module@version` refuses. `nested` names folders of the module that are
        modules of their own (so not in its zip) that a replace points at: each is fetched at
        the same version and put in its place."""
        module, _, version = module_version.partition("@")
        folder = self.cache / "go" / f"{module.replace('/', '_')}@{version}" / name
        binary = folder / name
        if binary.is_file():
            return binary
        go, env = _go(module_version, GOWORK="off")
        source = self.work / "go-src" / module.replace("/", "_")
        with self.step(f"go mod download {module_version}"):
            shutil.rmtree(source, ignore_errors=True)
            _copy_module(go, module_version, source, self.log, env)
            for relative in nested:
                _copy_module(go, f"{module}/{relative}@{version}", source / relative, self.log, env)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with self.step(f"go build {package} of {module_version}"):
            cmd = [go, "build", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(), "-o", str(partial / name)]
            cmd += [f"-tags={','.join(tags)}"] if tags else []
            debian.run_logged([*cmd, package], self.log, env, cwd=source)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        return binary


def _go(module_version: str, **extra: str) -> tuple[str, dict[str, str]]:
    """The `go` command and the environment of a static build with the local toolchain."""
    go = shutil.which("go")
    if go is None:
        raise debian.BuildError(f"`go` (1.24 or newer) is needed to build {module_version}")
    env = dict(os.environ, CGO_ENABLED="0", **extra)
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    env.setdefault("GOTOOLCHAIN", "local")
    return go, env


def _copy_module(go: str, module_version: str, target: Path, log: Path, env: Mapping[str, str]) -> None:
    """A writable copy of a module's source as the Go module proxy serves it."""
    proc = subprocess.run(
        [go, "mod", "download", "-json", module_version], capture_output=True, text=True, env=env, check=False
    )
    with log.open("a") as handle:
        handle.write(f"$ go mod download -json {module_version}\n{proc.stdout}{proc.stderr}")
    found = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0 or "Dir" not in found:
        why = found.get("Error") or proc.stderr.strip()[-800:]
        raise debian.BuildError(f"`go mod download {module_version}` failed: {why}")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(found["Dir"], target, symlinks=True)
    for path in (target, *target.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _install(source: Path, target: Path, mode: int = 0o755) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def _users(root: Path, passwd: str, group: str) -> None:
    _write(root / "etc/passwd", passwd)
    _write(root / "etc/group", group)


def _nonroot_tree(ctx: Context) -> Path:
    """An empty tree with the users of distroless's `static:nonroot` (root, nonroot 65532)."""
    root = ctx.empty()
    _users(
        root,
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        "root:x:0:\nnonroot:x:65532:\n",
    )
    (root / "home/nonroot").mkdir(parents=True)
    os.chown(root / "home/nonroot", 65532, 65532)
    return root


def _busybox_tree(ctx: Context, suite: str) -> Path:
    """An empty tree holding Debian's busybox-static (trixie's: BusyBox 1.37.0, a static binary
    that needs nothing else) and a link per applet in /bin, with the users of the official
    busybox image (root, nobody)."""
    root = ctx.empty()
    scratch = ctx.work / "busybox"
    with ctx.step(f"busybox-static from Debian {suite}"):
        helper = ctx.work / "apt-root"
        debian.copy_tree(debian.base(ctx.cache, ctx.log), helper)
        debian.with_network(helper)
        (deb,) = debian.download_debs(helper, ["busybox-static"], ctx.log, scratch, suite)
        shutil.rmtree(helper)
        debian.run_logged(["dpkg-deb", "-x", str(deb), str(scratch / "x")], ctx.log)
    busybox = root / "bin/busybox"
    unpacked = [scratch / "x" / where for where in ("usr/bin/busybox", "bin/busybox")]  # trixie: /usr/bin
    _install(next(path for path in unpacked if path.is_file()), busybox)
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.link(busybox, root / "bin" / applet)
    for folder in ("root", "home", "var/spool/mail", "var/www", "usr/sbin", "usr/bin", "sbin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "root").chmod(0o700)
    _users(
        root,
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        "root:x:0:\nnogroup:x:65534:\n",
    )
    return root


# ---------------------------------------------------------------------------------------------
# The images


def pause(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    root = ctx.empty()
    gcc = shutil.which("gcc")
    if gcc is None:
        raise debian.BuildError("gcc (Debian's gcc and libc6-dev) is needed to build the pause image")
    with ctx.step("gcc -static pause.c"):
        cmd = [gcc, "-static", "-Os", "-s", "-o", str(root / "pause"), str(ctx.file("images/pause/pause.c"))]
        debian.run_logged(cmd, ctx.log)
    return ImageConfig(user="65535:65535", entrypoint=("/pause",))


# security.capability holding cap_net_bind_service in the permitted and effective sets
# (VFS_CAP_REVISION_2): what `setcap cap_net_bind_service=+ep` writes.
NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def _coredns_binary(ctx: Context, version: str) -> Path:
    """The prebuilt binary of ../shared/tools (or its unpacked cache) when it is that version,
    else a build of the Go module."""
    from e2e.tools import install_shared_tools, tools_cache_bin

    module = f"github.com/coredns/coredns@v{version}"
    bin_dir, _ = install_shared_tools()
    for folder in (bin_dir, tools_cache_bin()):
        stamp = folder / "coredns.version" if folder else None
        if stamp and stamp.is_file() and stamp.read_text().strip() == module:
            return stamp.with_name("coredns")
    return ctx.go_binary(module)


def coredns(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    root = _nonroot_tree(ctx)
    binary = root / "coredns"
    _install(_coredns_binary(ctx, params["version"]), binary)
    os.setxattr(binary, "security.capability", NET_BIND_SERVICE)
    return ImageConfig(user="65532:65532", entrypoint=("/coredns",), env={"PATH": PATH})


def busybox(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    _busybox_tree(ctx, debian.NEWER)
    return ImageConfig(env={"PATH": PATH}, cmd=("sh",))


def statsd_exporter(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    version = params["version"]
    stamp = " ".join(
        f"-X github.com/prometheus/common/version.{key}={value}"
        for key, value in (("Version", version), ("Branch", "HEAD"), ("BuildUser", "e2e.node.images"))
    )
    binary = ctx.go_binary(f"github.com/prometheus/statsd_exporter@v{version}", stamp)
    root = _busybox_tree(ctx, debian.NEWER)
    _install(binary, root / "bin/statsd_exporter")
    return ImageConfig(user="65534", env={"PATH": PATH}, entrypoint=("/bin/statsd_exporter",))


AIRFLOW_DEBIAN = (
    "python3",
    "dumb-init",
    "postgresql-client",
    "ca-certificates",
    "curl",
    "git",
    "netcat-openbsd",
    "procps",
    "libstdc++6",
)
AIRFLOW_EXTRAS = "celery,cncf-kubernetes,fab,git,postgres,redis,statsd"
AIRFLOW_HOME = "/opt/airflow"
AIRFLOW_USER_HOME = "/home/airflow"
AIRFLOW_VENV = f"{AIRFLOW_USER_HOME}/.local"
# Pins the image build sets itself: the Airflow version comes from the tag.
_OWN_PINS = re.compile(r"^(apache-airflow|apache-airflow-core|apache-airflow-task-sdk)\s*==", re.IGNORECASE)


def airflow_constraints(text: str) -> str:
    """The constraints file without pins of Airflow itself (the tag names the version)."""
    return "".join(line for line in text.splitlines(keepends=True) if not _OWN_PINS.match(line.strip()))


def _compile_bytecode(python: str, *folders: str) -> str:
    # Hash-checked .pyc files stay valid whatever mtime the layer gives the sources: on a
    # read-only root file system, Python never has to compile a module again.
    return f"{python} -m compileall -q -j 2 --invalidation-mode unchecked-hash {' '.join(folders)} >/dev/null"


def airflow(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    version = params["version"]
    root = ctx.debian_base(AIRFLOW_DEBIAN)
    tools = ctx.work / "tools"
    _install(ctx.uv(), tools / "uv")
    # The machine's certificate authorities, for uv's downloads during the build only (a
    # TLS-inspecting proxy's CA, for one): the image keeps Debian's bundle.
    _install(Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"), tools / "ca.crt", 0o644)
    pins = ctx.file(f"images/airflow/constraints-{params['constraints']}.txt").read_text()
    _write(tools / "constraints.txt", airflow_constraints(pins))
    uv_cache = ctx.cache / "uv"
    uv_cache.mkdir(parents=True, exist_ok=True)
    binds = ((tools, "/tmp/tools"), (uv_cache, "/tmp/uv-cache"))
    with ctx.step("airflow user"):
        ctx.in_root(
            f"useradd --uid 50000 --gid 0 --home-dir {AIRFLOW_USER_HOME} --create-home --shell /bin/bash airflow"
        )
    requirement = f"apache-airflow[{AIRFLOW_EXTRAS}]=={version}"
    with ctx.step(f"uv pip install {requirement}"):
        ctx.in_root(
            "export UV_CACHE_DIR=/tmp/uv-cache UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never\n"
            "export SSL_CERT_FILE=/tmp/tools/ca.crt\n"
            f"/tmp/tools/uv venv --quiet --seed --python /usr/bin/python3 {AIRFLOW_VENV}\n"
            f"/tmp/tools/uv pip install --quiet --python {AIRFLOW_VENV}/bin/python "
            f"--constraint /tmp/tools/constraints.txt '{requirement}'\n",
            binds,
        )
    with ctx.step("bytecode"):
        ctx.in_root(_compile_bytecode(f"{AIRFLOW_VENV}/bin/python", AIRFLOW_VENV, "/usr/lib/python3.11"))
    _install(ctx.file("images/airflow/entrypoint"), root / "entrypoint")
    _install(ctx.file("images/airflow/clean-logs"), root / "clean-logs")
    with ctx.step("airflow version"):
        ctx.in_root(
            f"for d in {AIRFLOW_HOME} {AIRFLOW_HOME}/dags {AIRFLOW_HOME}/logs; do mkdir -p $d; done\n"
            f"chown -R 50000:0 {AIRFLOW_USER_HOME} {AIRFLOW_HOME}\n"
            f"chmod -R g+rwX {AIRFLOW_USER_HOME} {AIRFLOW_HOME}\n"
            "chmod g=u /etc/passwd\n"
            f'test "$(AIRFLOW_HOME=/tmp/check {AIRFLOW_VENV}/bin/airflow version 2>/dev/null | tail -1)" = {version}\n'
            "rm -rf /tmp/check\n"
        )
    env = {
        "PATH": f"/root/bin:{AIRFLOW_VENV}/bin:{PATH}",
        "VIRTUAL_ENV": AIRFLOW_VENV,
        "AIRFLOW_HOME": AIRFLOW_HOME,
        "AIRFLOW_UID": "50000",
        "AIRFLOW_USER_HOME_DIR": AIRFLOW_USER_HOME,
        "AIRFLOW_VERSION": version,
        "AIRFLOW_IMAGE_TYPE": "prod",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW_PYTHON_VERSION": "3.11",
        "DUMB_INIT_SETSID": "1",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "LANGUAGE": "C.UTF-8",
        "PIP_CACHE_DIR": "/tmp/.cache/pip",
        "UV_CACHE_DIR": "/tmp/.cache/uv",
        "GUNICORN_CMD_ARGS": "--worker-tmp-dir /dev/shm",
    }
    return ImageConfig(
        user="50000",
        env=env,
        entrypoint=("/usr/bin/dumb-init", "--", "/entrypoint"),
        workdir=AIRFLOW_HOME,
        labels={"org.apache.airflow.version": version, "org.apache.airflow.uid": "50000"},
    )


POSTGRESQL_DEBIAN = ("postgresql-15", "postgresql-15-pgaudit", "libnss-wrapper")
BITNAMI = "/opt/bitnami"


def postgresql(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    root = ctx.debian_base(POSTGRESQL_DEBIAN)
    scripts = root / "opt/bitnami/scripts/postgresql"
    _install(ctx.file("images/postgresql/entrypoint.sh"), scripts / "entrypoint.sh")
    _install(ctx.file("images/postgresql/run.sh"), scripts / "run.sh")
    with ctx.step("Bitnami layout, postgres as uid 1001"):
        ctx.in_root(
            "usermod -u 1001 -g 0 postgres\n"
            f"mkdir -p {BITNAMI}/postgresql/conf {BITNAMI}/postgresql/tmp {BITNAMI}/postgresql/logs\n"
            "mkdir -p /bitnami/postgresql\n"
            f"ln -s /usr/lib/postgresql/15/bin {BITNAMI}/postgresql/bin\n"
            f"chown -R 1001:0 {BITNAMI}/postgresql /bitnami /var/run/postgresql\n"
            f"chmod -R g+rwX {BITNAMI}/postgresql /bitnami\n"
            "rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main\n"
        )
    env = {
        "PATH": f"{BITNAMI}/postgresql/bin:{BITNAMI}/common/bin:{PATH}",
        "HOME": "/",
        "LANG": "C.UTF-8",
        "POSTGRESQL_VOLUME_DIR": "/bitnami/postgresql",
        "PGDATA": "/bitnami/postgresql/data",
        "APP_VERSION": params["version"],
    }
    return ImageConfig(
        user="1001",
        env=env,
        entrypoint=(f"{BITNAMI}/scripts/postgresql/entrypoint.sh",),
        cmd=(f"{BITNAMI}/scripts/postgresql/run.sh",),
    )


def redis(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    root = ctx.debian_base(("redis-server",))
    (root / "data").mkdir(exist_ok=True)
    os.chown(root / "data", 999, 999)
    return ImageConfig(env={"PATH": PATH}, cmd=("redis-server",), workdir="/data")


def pgbouncer(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    ctx.debian_base(("pgbouncer", "psmisc"), debian.NEWER)
    with ctx.step("pgbouncer folders for nobody"):
        ctx.in_root(
            "rm -f /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/userlist.txt\nchown -R nobody /var/run/postgresql"
        )
    return ImageConfig(user="65534", env={"PATH": PATH}, cmd=("pgbouncer", "/etc/pgbouncer/pgbouncer.ini"))


def pgbouncer_exporter_standin(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    root = _busybox_tree(ctx, debian.NEWER)
    _install(ctx.file("images/pgbouncer-exporter/pgbouncer_exporter"), root / "bin/pgbouncer_exporter")
    return ImageConfig(user="65534", env={"PATH": PATH}, entrypoint=("/bin/pgbouncer_exporter",))


def python(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    ctx.debian_base(("python3",))
    with ctx.step("python links, bytecode"):
        ctx.in_root("ln -sf python3 /usr/bin/python\n" + _compile_bytecode("python3", "/usr/lib/python3.11"))
    return ImageConfig(env={"PATH": PATH, "LANG": "C.UTF-8"}, cmd=("python3",))


def task(ctx: Context, params: Mapping[str, str]) -> ImageConfig:
    root = ctx.debian_base(("python3",))
    with ctx.step("user app 1001, hello.py"):
        ctx.in_root(
            "ln -sf python3 /usr/bin/python\n"
            "groupadd --gid 1001 app\n"
            "useradd --uid 1001 --gid 1001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app\n"
            + _compile_bytecode("python3", "/usr/lib/python3.11")
        )
        _install(ctx.file("images/task/hello.py"), root / "opt/task/hello.py", 0o644)
    env = {
        "PATH": PATH,
        "HOME": "/home/app",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
    }
    return ImageConfig(user="1001:1001", env=env, entrypoint=("python", "/opt/task/hello.py"), workdir="/home/app")
