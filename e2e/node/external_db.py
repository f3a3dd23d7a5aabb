"""A PostgreSQL server on the node's address, outside the cluster: the managed database a
production stack's `databaseUrl` points at (the `node-prod` scenario).

It runs the node's PostgreSQL image (`image_check.POSTGRES_REF`, Debian's PostgreSQL 15, built
and cached with the node's other images) as a plain process of the machine, the way
e2e.node.image_check runs it (chroot in a mount and PID namespace of its own, uid 1001), not
as a pod: nothing of the cluster serves it, as nothing of the cluster serves a managed database.
Like one, it speaks TLS only: a CA of its own (e2e.node.tls), `ssl = on`, and pg_hba.conf
refusing every connection without TLS (`hostnossl ... reject`); a database and a user for
Airflow. `log_connections` is on: its log names each connection's TLS, and any error a client
caused (a prepared statement PgBouncer's pooling lost, say).

Stopped by `stop()` (SIGTERM, then SIGKILL to its PID namespace) and its data folder removed;
after an interrupt the node's sweep stops it too (its command line names the node's folder).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ..harness import StepError
from .image_check import TMPFS, Container, Image, stop_container, unpack
from .tls import certificate

UID = 1001  # the image's user
USER = "airflow"
ADMIN = "postgres"  # the server's superuser, on its socket (a managed database's admin): makes databases
SOCKET_DIR = "/opt/bitnami/postgresql/tmp"  # the image's unix_socket_directories (pg_hba: local trust)
DATABASE = "airflow"
VOLUME = "/bitnami/postgresql"  # the image's volume; its run.sh includes conf/conf.d/override.conf from it
TLS_INSIDE = f"{VOLUME}/conf/conf.d"
START_TIMEOUT = 120.0
# node-prod's `databaseUrl` mode, the strictest libpq has: TLS, the server's certificate from the
# CA given (`airflow.database.caCertificate`), for the address dialled.
SSLMODE = "verify-full"


def override_conf(address: str) -> str:
    """What the image's postgresql.conf includes last: the node's address only, TLS, our pg_hba."""
    return (
        f"listen_addresses = '{address}'\n"
        "ssl = on\n"
        f"ssl_cert_file = '{TLS_INSIDE}/server.crt'\n"
        f"ssl_key_file = '{TLS_INSIDE}/server.key'\n"
        "ssl_min_protocol_version = 'TLSv1.2'\n"
        f"hba_file = '{TLS_INSIDE}/pg_hba.conf'\n"
        "log_connections = on\n"
    )


# TLS or nothing, as a managed database is set up: a client without TLS is refused by pg_hba.
PG_HBA = "local all all trust\nhostnossl all all 0.0.0.0/0 reject\nhostssl all all 0.0.0.0/0 scram-sha-256\n"


def database_url(address: str, port: int, password: str, sslmode: str = "require", database: str = DATABASE) -> str:
    """The `databaseUrl` a user sets: the Airflow user, its database, TLS required."""
    quoted = urllib.parse.quote(password, safe="")
    return f"postgresql://{USER}:{quoted}@{address}:{port}/{database}?sslmode={sslmode}"


# What a client's error looks like in the server's log when transaction pooling lost a prepared
# statement: asyncpg's `__asyncpg_stmt_N__` / psycopg 3's `_pg3_N` not there, or there twice.
PREPARED_ERRORS = re.compile(r"ERROR:\s+prepared statement \S+ (does not exist|already exists)")


def prepared_statement_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if PREPARED_ERRORS.search(line)]


def tls_connections(log: str) -> tuple[int, int]:
    """(connections authorized with TLS, without) in a log written with log_connections."""
    authorized = [line for line in log.splitlines() if "connection authorized:" in line]
    with_tls = [line for line in authorized if "SSL enabled" in line]
    return len(with_tls), len(authorized) - len(with_tls)


@dataclass
class ExternalPostgres:
    folder: Path  # below the node's folder (its sweep finds the process by it)
    archive: Path  # the PostgreSQL image's archive
    address: str
    port: int
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    image: Image | None = None
    proc: subprocess.Popen[bytes] | None = None
    ca_pem: str = ""

    @property
    def log(self) -> Path:
        return self.folder / "postgresql.log"

    @property
    def volume(self) -> Path:
        return self.folder / "volume"

    def url(self, sslmode: str = "require", database: str = DATABASE) -> str:
        return database_url(self.address, self.port, self.password, sslmode, database)

    def container(self, command: list[str] | None = None, extra_env: dict[str, str] | None = None) -> Container:
        if self.image is None:
            raise StepError("the PostgreSQL image is not unpacked (start() first)")
        env = {
            "POSTGRESQL_PORT_NUMBER": str(self.port),
            "POSTGRESQL_VOLUME_DIR": VOLUME,
            "PGDATA": f"{VOLUME}/data",
            "POSTGRESQL_USERNAME": USER,
            "POSTGRESQL_PASSWORD": self.password,
            "POSTGRESQL_DATABASE": DATABASE,
            "POSTGRESQL_POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "POSTGRESQL_SHARED_PRELOAD_LIBRARIES": "",
            **(extra_env or {}),
        }
        mounts = {VOLUME: (self.volume, False), "/dev/shm": (TMPFS, False)}
        args: list[str] | None = None if command is None else []
        return Container(
            self.image, env=env, user=f"{UID}:0", groups=str(UID), mounts=mounts, command=command, args=args
        )

    def start(self) -> None:
        """Unpack the image, write the TLS material and the configuration, start the server and
        wait until it takes a TLS login of the Airflow user."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.image = unpack(self.archive, self.folder / "image")
        conf = self.volume / "conf" / "conf.d"
        cert, key, self.ca_pem = certificate(self.folder / "tls", self.address, "postgresql")
        conf.mkdir(parents=True)
        shutil.copyfile(cert, conf / "server.crt")
        shutil.copyfile(key, conf / "server.key")
        (conf / "override.conf").write_text(override_conf(self.address))
        (conf / "pg_hba.conf").write_text(PG_HBA)
        (self.volume / "ca.crt").write_text(self.ca_pem)
        for path in [self.volume, *self.volume.rglob("*")]:
            os.chown(path, UID, UID)
        (conf / "server.key").chmod(0o600)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.container().argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        why = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StepError(f"PostgreSQL exited {self.proc.returncode}:\n{self.tail()}")
            done = self.psql("SELECT 1", "verify-full")
            if done.returncode == 0:
                return
            why = done.stderr.strip()
            time.sleep(1)
        raise StepError(f"PostgreSQL did not take a TLS login within {START_TIMEOUT:.0f}s: {why}\n{self.tail()}")

    def psql(
        self, sql: str, sslmode: str, database: str = DATABASE, admin: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`psql` of the image as the Airflow user, over TCP to the node's address, with `sslmode`
        (verify-full: trusting only the server's CA); or, `admin`, as the server's superuser on
        its own socket (the server's machine: `sslmode` does not apply)."""
        ca = f"{VOLUME}/ca.crt"
        dsn = f"host={self.address} port={self.port} user={USER} dbname={database} sslmode={sslmode} sslrootcert={ca}"
        if admin:
            dsn = f"host={SOCKET_DIR} port={self.port} user={ADMIN} dbname={database}"
        command = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql]
        probe = self.container(command, {"PGPASSWORD": self.password, "HOME": VOLUME})
        return subprocess.run(probe.argv(), capture_output=True, text=True, timeout=60, check=False)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """The server stopped and its folder (data, image, keys) removed."""
        if self.proc is not None:
            stop_container(self.proc)
            self.proc = None
        if self.folder.exists():
            kept = self.folder.parent / "postgresql.log"
            if self.log.exists():
                shutil.copyfile(self.log, kept)
            shutil.rmtree(self.folder)
