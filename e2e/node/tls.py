"""A CA of its own and a serving certificate for an address, made with openssl: what the node
scenarios' own servers (the `git` part's git server, `node-prod`'s PostgreSQL) present."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..harness import StepError


def certificate(folder: Path, address: str, name: str = "git") -> tuple[Path, Path, str]:
    """A CA (`airflow-k8s-e2e-<name>-ca`) and its serving certificate for `address` (an IP
    address, as the subjectAltName): (certificate, key, the CA's PEM). Valid two days."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, check=False)
        if done.returncode:
            raise StepError(f"openssl {args[0]}: {done.stderr.strip()}")

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", f"/CN=airflow-k8s-e2e-{name}-ca")  # fmt: skip
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", f"/CN=airflow-k8s-e2e-{name}")  # fmt: skip
    (folder / "server.ext").write_text(
        f"subjectAltName=IP:{address}\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "server.ext")  # fmt: skip
    return folder / "server.crt", folder / "server.key", (folder / "ca.crt").read_text()
