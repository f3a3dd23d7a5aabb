"""etcd and kube-apiserver on 127.0.0.1 with throwaway certificates: the start code the preview's
server-side dry run (components/offline/dry_run.py) and the end-to-end harness (e2e/cluster.py)
share. Every process runs in a session of its own (stopped as a group, by id) and writes its
output to `<logs>/<name>.log`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .kube_api import Kube, wait_for

LOCALHOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the first address of SERVICE_CIDR


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        port: int = s.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"`openssl {' '.join(args)}` failed: {proc.stderr.strip()}")


def make_certificates(pki: Path, address: str = LOCALHOST, node: str | None = None, days: int = 2) -> None:
    """A throwaway CA, the API server's serving certificate (127.0.0.1, and `address` when the API
    server listens there), an admin client certificate (system:masters) and the service-account
    signing key pair. With a real `node`: the kubelet's serving certificate (on `address`), the
    API server's client certificate towards the kubelet, and the client certificates of the
    kubelet (system:node:<node>) and kube-proxy (system:kube-proxy)."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", str(days), "-subj", "/CN=airflow-k8s-e2e-ca", cwd=pki,
    )  # fmt: skip
    # The `kubernetes` Service's address too: pods reach the API server there (through kube-proxy).
    ips = ",".join(f"IP:{ip}" for ip in dict.fromkeys([LOCALHOST, address, KUBERNETES_SERVICE_IP]))
    server = "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment"
    client = "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment"
    leaves = {
        "apiserver": (
            "/CN=kube-apiserver",
            f"subjectAltName={ips},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            f"DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n{server}",
        ),
        "admin": ("/O=system:masters/CN=airflow-k8s-e2e-admin", client),
    }
    if node is not None:
        leaves |= {
            "kubelet": (f"/CN={node}", f"subjectAltName=IP:{address},DNS:{node}\n{server}"),
            "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client", client),
            "node": (f"/O=system:nodes/CN=system:node:{node}", client),
            "kube-proxy": ("/CN=system:kube-proxy", client),
        }
    for name, (subject, ext) in leaves.items():
        (pki / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=pki,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", str(days), "-extfile", f"{name}.ext", cwd=pki,
        )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def kubeconfig(server: str, pki: Path) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: {server}
    certificate-authority: {pki / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {pki / "admin.crt"}
    client-key: {pki / "admin.key"}
contexts:
- name: e2e
  context: {{cluster: e2e, user: admin}}
current-context: e2e
"""


def admin_client(server: str, pki: Path) -> Kube:
    return Kube(server, pki / "ca.crt", pki / "admin.crt", pki / "admin.key")


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]


def spawn(logs: Path, name: str, args: list[str], cwd: Path | None = None) -> Process:
    """`args` in a process group of its own (stopped as a group, by id), output in logs/<name>.log."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    handle = log.open("ab")
    handle.write(f"$ {' '.join(args)}\n".encode())
    handle.flush()
    popen = subprocess.Popen(
        args, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd
    )
    return Process(name, popen, log, handle)


def first_exited(processes: list[Process]) -> str | None:
    """The first of `processes` that has exited, with its code and log (None while all run)."""
    for p in processes:
        if p.popen.poll() is not None:
            return f"{p.name} exited with {p.popen.returncode} (log: {p.log})"
    return None


def stop_all(processes: list[Process], grace: float = 20) -> list[str]:
    """Stop `processes` in reverse order, each by its process group id (SIGTERM, then SIGKILL
    after `grace` seconds); the problems met."""
    problems = []
    for p in reversed(processes):
        if p.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGTERM)
            try:
                p.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait(timeout=10)
                problems.append(f"{p.name} needed SIGKILL")
        p.handle.close()
    return problems


def wait_port(name: str, proc: Process, port: int, timeout: float = 60) -> None:
    def up() -> str | None:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.popen.returncode} (log: {proc.log})")
        try:
            with socket.create_connection((LOCALHOST, port), timeout=1):
                return None
        except OSError as exc:
            return str(exc)

    wait_for(f"{name} on {LOCALHOST}:{port}", up, timeout=timeout, interval=0.2)


def start_etcd(logs: Path, binary: Path, data_dir: Path) -> tuple[Process, int]:
    """etcd on two free loopback ports, without fsync (a throwaway store); waits until it listens.
    Returns the process and its client port."""
    client, peer = free_port(), free_port()
    etcd = spawn(
        logs,
        "etcd",
        [
            str(binary),
            "--name=e2e",
            f"--data-dir={data_dir}",
            f"--listen-client-urls=http://{LOCALHOST}:{client}",
            f"--advertise-client-urls=http://{LOCALHOST}:{client}",
            f"--listen-peer-urls=http://{LOCALHOST}:{peer}",
            f"--initial-advertise-peer-urls=http://{LOCALHOST}:{peer}",
            f"--initial-cluster=e2e=http://{LOCALHOST}:{peer}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
        ],
    )
    try:
        wait_port("etcd", etcd, client)
    except BaseException:
        stop_all([etcd])
        raise
    return etcd, client


def start_apiserver(
    logs: Path, binary: Path, pki: Path, etcd_port: int, *, address: str, port: int, extra: list[str]
) -> Process:
    """kube-apiserver on `address`:`port` over etcd on 127.0.0.1:`etcd_port`, authenticating client
    certificates of `pki`'s CA, RBAC on; `extra` adds flags. Does not wait (see wait_ready)."""
    return spawn(
        logs,
        "kube-apiserver",
        [
            str(binary),
            f"--etcd-servers=http://{LOCALHOST}:{etcd_port}",
            f"--bind-address={address}",
            f"--advertise-address={address}",
            f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            *extra,
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={pki}",
        ],
    )


def wait_ready(kube: Kube, processes: list[Process], timeout: float = 180) -> None:
    """Until the API server answers /readyz; an exited process of `processes` ends the wait."""

    def ready() -> str | None:
        dead = first_exited(processes)
        if dead:
            raise RuntimeError(dead)
        try:
            kube.request("GET", "/readyz", timeout=5)
        except Exception as exc:
            return str(exc)
        return None

    wait_for("kube-apiserver /readyz", ready, timeout=timeout, interval=0.2)
