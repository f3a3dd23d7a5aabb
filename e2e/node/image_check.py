"""Run the node's Airflow image without a cluster, the way the chart's pods run it.

`python -m e2e.node.images check apache/airflow:3.2.0` (root; Linux namespaces, no container
runtime): the image's layer and the bundled-PostgreSQL image's layer are unpacked and their
processes started in `chroot` inside a mount and PID namespace each (`unshare`), with the
image's own entrypoint, environment and user, as the pod specs ask:

1. PostgreSQL (docker.io/bitnamilegacy/postgresql:16.1.0-debian-11-r15, uid 1001) on an empty
   volume, on 127.0.0.1, until its readiness probe (`pg_isready`) passes;
2. Airflow as uid 50000 gid 0 with a read-only root file system, a tmpfs /tmp, airflow.cfg and
   the secret files mounted read-only, the logs folder writable: `airflow db migrate` (the
   migration Job's command), `airflow db check-migrations` (the init containers'), `airflow
   users create` (the create-user Job's), then `airflow api-server` until
   /api/v2/monitor/health answers, `airflow scheduler` until that health reports it healthy,
   and `/clean-logs` deleting an old log file;
3. PostgreSQL killed and started again on the same volume: the data is kept (migrations stay
   current, the admin user is there).

Every process of the check is stopped at the end, also on failure or interrupt (SIGTERM, then
SIGKILL, to the first process of each PID namespace), and its folder removed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_REF = "docker.io/bitnamilegacy/postgresql:16.1.0-debian-11-r15"
TMPFS = Path("/dev/null")  # marks a tmpfs mount


class CheckError(RuntimeError):
    pass


@dataclass
class Image:
    root: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    workdir: str


def unpack(archive: Path, into: Path) -> Image:
    """The root file system and config of an archive written by oci.write_archive."""
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))["config"]  # type: ignore[arg-type]
        tar.extract(manifest[0]["Layers"][0], into, filter="fully_trusted")
    layer = into / manifest[0]["Layers"][0]
    root = into / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-x", "--numeric-owner", "-p", "-f", str(layer), "-C", str(root)], check=True)
    layer.unlink()
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    return Image(root, env, config.get("Entrypoint") or [], config.get("Cmd") or [], config.get("WorkingDir") or "/")


@dataclass
class Container:
    """How to start a process from an image, as a pod spec would."""

    image: Image
    args: Sequence[str] | None = None  # replaces the image's Cmd (a pod's `args`)
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: Mapping[str, tuple[Path, bool]] = field(default_factory=dict)  # path -> (source, read-only)
    user: str = "0:0"
    groups: str = ""
    read_only: bool = False
    command: Sequence[str] | None = None  # replaces the Entrypoint (a pod's `command`)

    def argv(self) -> list[str]:
        root = self.image.root
        lines = ["set -e", f"mount --bind {root} {root}", f"mount -t proc proc {root}/proc"]
        for target, (source, read_only) in self.mounts.items():
            inside = root / target.lstrip("/")
            if source == TMPFS:
                inside.mkdir(parents=True, exist_ok=True)
                lines.append(f"mount -t tmpfs -o mode=1777 tmpfs {inside}")
                continue
            if source.is_dir():
                inside.mkdir(parents=True, exist_ok=True)
            else:
                inside.parent.mkdir(parents=True, exist_ok=True)
                inside.touch()
            lines.append(f"mount --bind {source} {inside}")
            if read_only:
                lines.append(f"mount -o remount,bind,ro {inside}")
        lines.append(f"mount --rbind /dev {root}/dev")
        if self.read_only:
            lines.append(f"mount -o remount,bind,ro {root}")
        env = {**self.image.env, "HOSTNAME": "check", **self.env}
        program = [*(self.command if self.command is not None else self.image.entrypoint)]
        program += list(self.args if self.args is not None else ([] if self.command else self.image.cmd))
        groups = f"--groups={self.groups} " if self.groups else ""
        inner = ["/usr/bin/env", "-i", f"--chdir={self.image.workdir}", *(f"{k}={v}" for k, v in env.items())]
        lines.append(f"exec chroot {groups}--userspec={self.user} {root} " + " ".join(_q(p) for p in inner + program))
        return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", "\n".join(lines)]


def _q(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


class Processes:
    """The check's long-running processes; `stop_all` ends each by its own process id."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, container: Container) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(container.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.running.pop(name, None)
        if proc is not None:
            stop_container(proc)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stop_container(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """Stop a container started with Container.argv(): SIGTERM to the first process of its
    PID namespace (unshare itself ignores SIGTERM), then SIGKILL to it, which ends every
    process of the namespace. (unshare's --kill-child does not reach a child that changed its
    user, as `chroot --userspec` does: the kernel clears the parent-death signal then.)"""
    if proc.poll() is not None:
        return
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    firsts = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in firsts:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


def run_once(container: Container, log: Path, timeout: float) -> None:
    with log.open("ab") as out:
        proc = subprocess.Popen(container.argv(), stdout=out, stderr=subprocess.STDOUT)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_container(proc, grace=5)
            raise CheckError(f"still running after {timeout:.0f} s") from None
        finally:
            stop_container(proc, grace=5)  # an interrupt, too
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise CheckError(f"exited {returncode}:\n{tail}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, test: Callable[[], bool], timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return
        if not alive():
            raise CheckError(f"{what}: the process ended")
        time.sleep(2)
    raise CheckError(f"{what}: not within {timeout:.0f} s")


def health(port: int) -> dict[str, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            data: dict[str, dict[str, object]] = json.loads(response.read())
            return data
    except (OSError, ValueError):
        return {}


AIRFLOW_CFG = """[core]
auth_manager = airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
dags_folder = /opt/airflow/dags
execution_api_server_url = http://127.0.0.1:{api}/execution/
executor = LocalExecutor
load_examples = False

[api]
host = 127.0.0.1
port = {api}

[dag_processor]
dag_bundle_config_list = {bundles}

[fab]
enable_proxy_fix = True

[logging]
colored_console_log = False

[metrics]
statsd_on = False

[scheduler]
standalone_dag_processor = True

[secrets]
backend = airflow.secrets.local_filesystem.LocalFilesystemBackend
backend_kwargs = {secrets}
"""
CREATE_USER = 'exec airflow users create "$@" --password "$(cat /opt/airflow/secrets/admin-password)"'
ADMIN = [
    *("--role", "Admin", "--username", "admin", "--email", "admin@example.com"),
    *("--firstname", "Airflow", "--lastname", "Admin"),
]
SECRET_ENV = {
    "AIRFLOW__CORE__FERNET_KEY_CMD": "cat /opt/airflow/secrets/fernet-key",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /opt/airflow/secrets/sql-alchemy-conn",
    "AIRFLOW__API__SECRET_KEY_CMD": "cat /opt/airflow/secrets/api-secret-key",
    "AIRFLOW__API_AUTH__JWT_SECRET_CMD": "cat /opt/airflow/secrets/jwt-secret",
    "AIRFLOW_HOME": "/opt/airflow",
}


@contextmanager
def _step(what: str, echo: Callable[[str], None], timings: dict[str, float] | None = None) -> Iterator[None]:
    started = time.monotonic()
    yield
    took = time.monotonic() - started
    if timings is not None:
        timings[what] = took
    echo(f"  check: {what} ({took:.1f} s)")


def check(
    ref: str,
    cache: Path | None = None,
    echo: Callable[[str], None] | None = None,
    timings: dict[str, float] | None = None,
) -> int:
    """Run the check for the Airflow (or Spark) image `ref`; 0 when every step passed. `timings`,
    when given, receives each Airflow check step's seconds (benchmarks/node.py's floor)."""
    from e2e.node.images import build, say
    from e2e.node.recipes import select

    echo = echo or say
    if os.geteuid() != 0:
        echo("check: needs root (mount and PID namespaces, chroot)")
        return 2
    chosen = select(ref)
    if chosen is not None and chosen.recipe.name == "spark":
        return check_spark(ref, build([ref], cache, echo)[ref], echo)
    archives = build([ref, POSTGRES_REF], cache, echo)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="airflow-image-check-") as tmp:
        work = Path(tmp)
        procs = Processes(work)
        try:
            _run_check(work, archives[ref], archives[POSTGRES_REF], procs, echo, timings)
        except CheckError as exc:
            echo(f"check FAILED: {exc}")
            for name in list(procs.running):
                echo(f"--- last lines of {name}:\n{procs.tail(name)}")
            return 1
        finally:
            procs.stop_all()
    echo(f"check: {ref} passed in {time.monotonic() - started:.1f} s")
    return 0


SPARK_PI = "local:///opt/spark/examples/jars/spark-examples.jar"


def check_spark(ref: str, archive: Path, echo: Callable[[str], None]) -> int:
    """SparkPi from the Spark image, as user spark (185) through the image's entrypoint, in
    local mode (a driver and its executor threads in one JVM): Spark's jars, the launcher
    scripts and the program work together. The Kubernetes driver and executor paths of the
    entrypoint need a cluster (the node)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spark-image-check-") as tmp:
        work = Path(tmp)
        try:
            with _step("unpack the image", echo):
                image = unpack(archive, work / "spark")
            log = work / "spark-pi.log"
            args = ["spark-submit", "--master", "local[2]", "--class", "org.apache.spark.examples.SparkPi"]
            # The machine's host name is not in the image's /etc/hosts (a pod's is): loopback.
            local = {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOCAL_HOSTNAME": "localhost"}
            container = Container(
                image, args=[*args, SPARK_PI, "10"], env=local, user="185:185", mounts={"/tmp": (TMPFS, False)}
            )
            with _step("spark-submit SparkPi (local[2], 10 slices)", echo):
                run_once(container, log, timeout=600)
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("Pi is roughly ")]
            if not lines or not 3.0 < float(lines[-1].split()[-1]) < 3.3:
                raise CheckError(f"no estimate of pi in the output:\n{log.read_text(errors='replace')[-2000:]}")
            echo(f"  {lines[-1]}")
        except CheckError as exc:
            echo(f"check FAILED: {exc}")
            return 1
    echo(f"check: {ref} passed in {time.monotonic() - started:.1f} s")
    return 0


def _run_check(
    work: Path,
    airflow_archive: Path,
    postgres_archive: Path,
    procs: Processes,
    echo: Callable[[str], None],
    timings: dict[str, float] | None = None,
) -> None:
    with _step("unpack both images", echo, timings):
        airflow = unpack(airflow_archive, work / "airflow")
        postgres = unpack(postgres_archive, work / "postgresql")
    pg_port, api_port = free_port(), free_port()
    password = base64.urlsafe_b64encode(os.urandom(18)).decode()
    volume = work / "pg-volume"
    volume.mkdir()
    os.chown(volume, 1001, 1001)
    pg_env = {
        "POSTGRESQL_PORT_NUMBER": str(pg_port),
        "POSTGRESQL_VOLUME_DIR": "/bitnami/postgresql",
        "PGDATA": "/bitnami/postgresql/data",
        "POSTGRES_PASSWORD": password,
        "POSTGRESQL_CLIENT_MIN_MESSAGES": "error",
        "POSTGRESQL_SHARED_PRELOAD_LIBRARIES": "pgaudit",
        "POSTGRESQL_PGAUDIT_LOG_CATALOG": "off",
    }
    pg = Container(
        postgres,
        env=pg_env,
        user="1001:0",
        groups="1001",
        mounts={"/bitnami/postgresql": (volume, False), "/dev/shm": (TMPFS, False)},
    )
    probe = Container(
        postgres,
        command=["/bin/sh", "-c", f'exec pg_isready -U "postgres" -h 127.0.0.1 -p {pg_port}'],
        args=[],
        env=pg_env,
        user="1001:0",
    )

    def postgres_ready() -> bool:
        return subprocess.run(probe.argv(), capture_output=True, check=False).returncode == 0

    def start_postgres(what: str) -> None:
        with _step(what, echo, timings):
            proc = procs.start("postgresql", pg)
            wait_for("PostgreSQL readiness probe", postgres_ready, 90, lambda: proc.poll() is None)

    start_postgres("PostgreSQL: empty volume initialised, pg_isready passes")
    secrets = work / "secrets"
    secrets.mkdir()
    files = {
        "fernet-key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "sql-alchemy-conn": f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/postgres",
        "api-secret-key": base64.urlsafe_b64encode(os.urandom(24)).decode(),
        "jwt-secret": base64.urlsafe_b64encode(os.urandom(24)).decode(),
        "admin-password": "admin-check-password",
        "connections.json": "{}",
        "variables.json": "{}",
    }
    for name, text in files.items():
        (secrets / name).write_text(text)
        os.chown(secrets / name, 50000, 0)
        (secrets / name).chmod(0o440)
    cfg = work / "airflow.cfg"
    bundles = [
        {"classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {}, "name": "dags-folder"}
    ]
    backend = {
        "connections_file_path": "/opt/airflow/secrets/connections.json",
        "variables_file_path": "/opt/airflow/secrets/variables.json",
    }
    cfg.write_text(AIRFLOW_CFG.format(api=api_port, bundles=json.dumps(bundles), secrets=json.dumps(backend)))
    logs, dags = work / "logs", work / "dags"
    for folder in (logs, dags):
        folder.mkdir()
        os.chown(folder, 50000, 0)
        folder.chmod(0o2775)
    mounts = {
        "/opt/airflow/airflow.cfg": (cfg, True),
        "/opt/airflow/secrets": (secrets, True),
        "/opt/airflow/logs": (logs, False),
        "/opt/airflow/dags": (dags, True),
        "/tmp": (TMPFS, False),
    }

    def airflow_container(args: list[str], env: Mapping[str, str] | None = None) -> Container:
        return Container(airflow, args=args, env=env or SECRET_ENV, mounts=mounts, user="50000:0", read_only=True)

    def once(what: str, args: list[str], timeout: float = 600) -> None:
        with _step(what, echo, timings):
            try:
                run_once(airflow_container(args), work / "once.log", timeout)
            except CheckError as exc:
                raise CheckError(f"{what}: {exc}") from exc

    once("airflow db migrate (the migration Job)", ["bash", "-c", "exec \\\nairflow db migrate"])
    once(
        "airflow db check-migrations (the init containers)",
        ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"],
    )
    once("airflow users create (the create-user Job)", ["bash", "-c", CREATE_USER, "--", *ADMIN])
    with _step("airflow api-server answers /api/v2/monitor/health", echo, timings):
        api = procs.start("api-server", airflow_container(["bash", "-c", "exec airflow api-server"]))
        wait_for("api-server health", lambda: bool(health(api_port)), 240, lambda: api.poll() is None)
    with _step("airflow scheduler reported healthy", echo, timings):
        scheduler = procs.start("scheduler", airflow_container(["bash", "-c", "exec airflow scheduler"]))
        wait_for(
            "scheduler health",
            lambda: health(api_port).get("scheduler", {}).get("status") == "healthy",
            240,
            lambda: scheduler.poll() is None,
        )
    echo(f"    health: {json.dumps(health(api_port), sort_keys=True)[:300]}")
    old = logs / "dag_id=old" / "task.log"
    old.parent.mkdir()
    old.write_text("old\n")
    os.utime(old, (time.time() - 9 * 86400, time.time() - 9 * 86400))
    for path in (old.parent, old):  # written by Airflow's tasks (uid 50000) on a real node
        os.chown(path, 50000, 0)
    with _step("/clean-logs deletes a 9-day-old log (retention 7 days)", echo, timings):
        # The groomer's environment as the chart renders it (no database, no airflow.cfg), but
        # for CONNECTION_CHECK_MAX_COUNT=0: without it the entrypoint's `airflow db check` falls
        # back to SQLite in AIRFLOW_HOME, which a read-only root cannot hold, and gives up.
        env = {
            "CONNECTION_CHECK_MAX_COUNT": "0",
            "AIRFLOW_HOME": "/opt/airflow",
            "AIRFLOW__LOG_RETENTION_DAYS": "7",
            "AIRFLOW__LOG_CLEANUP_FREQUENCY_MINUTES": "15",
        }
        groomer = procs.start("log-groomer", airflow_container(["bash", "/clean-logs"], env))
        wait_for("the old log deleted", lambda: not old.exists(), 60, lambda: groomer.poll() is None)
    for name in ("log-groomer", "scheduler", "api-server", "postgresql"):
        procs.stop(name)
    start_postgres("PostgreSQL killed and started again on the same volume")
    once(
        "airflow db check-migrations after the restart (data kept)",
        ["airflow", "db", "check-migrations", "--migration-wait-timeout=10"],
    )
    once(
        "airflow users list shows admin after the restart",
        ["bash", "-c", "airflow users list | grep -q '^[0-9]* *| admin'"],
    )
