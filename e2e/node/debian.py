"""Root file systems for the node's images: one Debian bookworm base made by `debootstrap
--variant=minbase` (cached), copied for each image, and commands run inside such a tree.

A command runs in `chroot`, inside a mount and PID namespace of its own (`unshare`): the
`/proc`, `/dev` and cache mounts it needs vanish with it, also when it fails or is interrupted,
and no daemon a package's install script might start outlives it. It shares the machine's
network, so apt and pip reach their registries; nothing else is contacted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

SUITE = "bookworm"  # Debian 12, the base of every image but those that need a newer package
NEWER = "trixie"  # Debian 13: PgBouncer 1.24 (bookworm's 1.18 lacks max_prepared_statements)
MIRROR = "http://deb.debian.org/debian"


def sources(suite: str) -> str:
    return (
        f"deb {MIRROR} {suite} main\n"
        f"deb {MIRROR} {suite}-updates main\n"
        f"deb http://deb.debian.org/debian-security {suite}-security main\n"
    )


# What Debian's slim images leave out (documentation, manuals, translations), and no
# recommended packages: the images carry what they run.
DPKG_SLIM = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
APT_CONF = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Retries "3";\n'
# No service is started while packages are installed (postgresql, redis, pgbouncer would try).
POLICY_RC = "#!/bin/sh\nexit 101\n"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The Debian packages a build needs on the machine itself (run.sh installs them, as root).
HOST_PACKAGES = ("debootstrap", "gcc", "libc6-dev")
HOST_COMMANDS = {"debootstrap": "debootstrap", "unshare": "util-linux", "chroot": "coreutils", "tar": "tar"}


class BuildError(RuntimeError):
    """A build step failed; the message names the command and ends with its last output lines."""


def base_key(suite: str = SUITE) -> str:
    """What the base tree is made from: a change to any of it makes a new base."""
    text = "\0".join([suite, MIRROR, sources(suite), DPKG_SLIM, APT_CONF, POLICY_RC, _BASE_SCRIPT])
    return hashlib.sha256(text.encode()).hexdigest()


def missing_host_commands() -> list[str]:
    """The Debian packages to install before a build can start (empty when all are there)."""
    return sorted({pkg for cmd, pkg in HOST_COMMANDS.items() if shutil.which(cmd) is None})


def missing_host_packages() -> list[str]:
    """Which of HOST_PACKAGES dpkg does not report installed."""
    missing = []
    for package in HOST_PACKAGES:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in proc.stdout:
            missing.append(package)
    return missing


def ensure_host_packages(log: Path) -> list[str]:
    """Install the missing HOST_PACKAGES with apt-get; returns what was installed."""
    missing = missing_host_packages()
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_logged(["apt-get", "update", "-qq"], log, env)
        run_logged(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], log, env)
    return missing


def run_logged(cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    """Run `cmd` (in `cwd`) with its output appended to `log`; a failure raises BuildError with its tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"`{' '.join(cmd)[:300]}` exited {proc.returncode} (log: {log}):\n{tail}")


def in_root(
    root: Path, script: str, log: Path, *, binds: Sequence[tuple[Path, str]] = (), env: Mapping[str, str] | None = None
) -> None:
    """Run the shell `script` as root inside `root` (chroot, own mount and PID namespace).
    `binds`: host folders mounted at paths inside the tree for the command's time."""
    mounts = [f"mount --rbind /dev {_q(root / 'dev')}"]
    for source, target in binds:
        inside = root / target.lstrip("/")
        mounts.append(f"mkdir -p {_q(inside)} && mount --bind {_q(source)} {_q(inside)}")
    variables = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    variables.update(env or {})
    inner = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in variables.items()), "/bin/sh", "-ec", script]
    outer = " && ".join(mounts) + f" && exec chroot {_q(root)} " + " ".join(_q(part) for part in inner)
    (root / "proc").mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    # --kill-child: an interrupted build takes the namespace's processes with it.
    unshare = ["unshare", "--mount", "--pid", "--fork", "--kill-child", f"--mount-proc={root / 'proc'}"]
    run_logged([*unshare, "sh", "-ec", outer], log)


def _q(value: object) -> str:
    text = str(value)
    return "'" + text.replace("'", "'\"'\"'") + "'"


_BASE_SCRIPT = """
apt-get update -qq
apt-get -y -qq upgrade
apt-get clean
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /var/log/apt/* /var/log/*.log
"""


def base(cache: Path, log: Path, suite: str = SUITE) -> Path:
    """The cached Debian base tree (debootstrap minbase, updates applied), made once per key."""
    target = cache / "base" / f"{suite}-{base_key(suite)[:16]}"
    done = target.with_name(target.name + ".done")
    if done.exists() and target.is_dir():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run_logged(["debootstrap", "--variant=minbase", suite, str(partial), MIRROR], log)
    (partial / "etc/apt/sources.list").write_text(sources(suite))
    (partial / "etc/dpkg/dpkg.cfg.d/slim").write_text(DPKG_SLIM)
    (partial / "etc/apt/apt.conf.d/10images").write_text(APT_CONF)
    with_network(partial)
    in_root(partial, _BASE_SCRIPT, log)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    done.write_text(base_key(suite) + "\n")
    return target


def copy_tree(source: Path, target: Path) -> None:
    """A copy of `source` at `target` (reflinks where the file system has them)."""
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(target)], check=True)


def with_network(root: Path) -> None:
    """Name resolution and no service starts, for the time of a build."""
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC)
    policy.chmod(0o755)


def finish(root: Path) -> None:
    """Undo `with_network` and drop what a build leaves behind: the runtime supplies
    resolv.conf, hostname and hosts."""
    (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    for name in ("etc/resolv.conf", "etc/hostname"):
        path = root / name
        path.unlink(missing_ok=True)
        path.write_text("")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    for pattern in ("var/log/apt/*", "var/log/*.log", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"):
        for path in root.glob(pattern):
            if path.is_file():
                path.unlink()
    for tmp in (root / "tmp", root / "var/tmp"):
        if tmp.is_dir():
            shutil.rmtree(tmp)
            tmp.mkdir()
            tmp.chmod(0o1777)


def apt_install(root: Path, packages: Sequence[str], archives: Path, log: Path) -> None:
    """Install Debian `packages` into `root`; downloaded .debs stay in `archives` for the next image."""
    if not packages:
        return
    archives.mkdir(parents=True, exist_ok=True)
    names = " ".join(packages)
    script = f"apt-get update -qq\napt-get install -y -qq --no-install-recommends {names}\n"
    in_root(root, script, log, binds=[(archives, "/var/cache/apt/archives")])


def download_debs(root: Path, packages: Sequence[str], log: Path, into: Path, suite: str = SUITE) -> list[Path]:
    """The .deb files of `packages` (without their dependencies) from `suite`, fetched with the
    apt of `root` (a scratch copy of a base: its package lists are replaced) into `into`."""
    into.mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/sources.list").write_text(sources(suite))
    script = f"apt-get update -qq\ncd /tmp/debs\napt-get download -qq {' '.join(packages)}\n"
    in_root(root, script, log, binds=[(into, "/tmp/debs")])
    found = []
    for package in packages:
        debs = sorted(into.glob(f"{package}_*.deb"))
        if not debs:
            raise BuildError(f"apt downloaded no {package}_*.deb into {into}")
        found.append(debs[-1])
    return found
