"""The node scenario's `git` part, offline: its git server (git's smart HTTP behind TLS and a token)
answers a real `git clone` only with the token and only to a client that trusts its CA, and the
stack it switches to is one the components accept. The part itself runs on the real node
(`AIRFLOW_K8S_NODE_PARTS=git`, docs/e2e.md)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.platform.config import parse_stack
from e2e.node import host, part_git, tls
from e2e.node.git_server import authorized, split_cgi

needs_tools = pytest.mark.skipif(not (shutil.which("git") and shutil.which("openssl")), reason="needs git and openssl")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class TestTheToken:
    def test_basic_auth_with_the_token_as_password_is_accepted_whatever_the_user(self):
        assert authorized(basic("git", "t0k"), "t0k")
        assert authorized(basic("anyone", "t0k"), "t0k")

    @pytest.mark.parametrize(
        "header",
        [None, "", basic("git", "wrong"), "Bearer t0k", "Basic !!!", "Basic " + base64.b64encode(b"t0k").decode()],
    )
    def test_anything_else_is_refused(self, header):
        assert not authorized(header, "t0k")


class TestTheCgiAnswer:
    def test_the_status_header_sets_the_status_and_the_rest_are_passed_on(self):
        status, headers, body = split_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
        assert (status, headers, body) == (404, [("Content-Type", "text/plain")], b"nope")

    def test_without_a_status_it_is_200(self):
        assert split_cgi(b"Content-Type: x\n\nbody")[0] == 200

    def test_an_answer_without_headers_is_a_bad_gateway(self):
        assert split_cgi(b"garbage")[0] == 502


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The server on 127.0.0.1 serving a repository with one file; (url, the CA file)."""
    cert, key, _ = tls.certificate(tmp_path / "tls", "127.0.0.1")
    root = tmp_path / "repos"
    root.mkdir()
    bare, work = root / "dags.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    (work / "dag.py").write_text("x = 1\n")
    ident = ["-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    subprocess.run(["git", *ident, "commit", "-q", "-m", "dag"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True)
    (tmp_path / "token").write_text("t0k\n")
    port = host.free_port("127.0.0.1")
    args = [sys.executable, "-m", "e2e.node.git_server", f"--listen=127.0.0.1:{port}", f"--root={root}",
            f"--cert={cert}", f"--key={key}", f"--token-file={tmp_path / 'token'}", f"--folder={tmp_path}"]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}"], input=b"",
                                   capture_output=True, check=False)  # fmt: skip
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        yield f"https://127.0.0.1:{port}/dags.git", tmp_path / "tls" / "ca.crt"
    finally:
        process.terminate()
        process.wait(timeout=10)


def clone(url: str, ca: Path | str, to: Path) -> subprocess.CompletedProcess[str]:
    env = {"GIT_SSL_CAINFO": str(ca), "GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(to.parent)}
    return subprocess.run(["git", "clone", "-q", url, str(to)], env=env, capture_output=True, text=True, check=False)


@needs_tools
class TestTheServer:
    def test_a_client_with_the_token_that_trusts_the_servers_ca_clones_the_repository(self, server, tmp_path):
        url, ca = server
        done = clone(url.replace("https://", "https://git:t0k@"), ca, tmp_path / "clone")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "clone" / "dag.py").read_text() == "x = 1\n"

    def test_a_wrong_token_is_refused(self, server, tmp_path):
        url, ca = server
        done = clone(url.replace("https://", "https://git:nope@"), ca, tmp_path / "clone")
        assert done.returncode != 0 and "Authentication failed" in done.stderr

    def test_a_client_that_trusts_only_the_systems_cas_refuses_the_server(self, server, tmp_path):
        url, _ = server
        system = "/etc/ssl/certs/ca-certificates.crt"
        done = clone(url.replace("https://", "https://git:t0k@"), system, tmp_path / "clone")
        assert done.returncode != 0 and "certificate" in done.stderr


@needs_tools
class TestTheStack:
    def test_the_stack_the_part_switches_to_is_accepted_by_the_components(self, tmp_path):
        _, _, ca = tls.certificate(tmp_path, "10.89.0.1")
        server = part_git.GitServer(tmp_path, "https://10.89.0.1:4443/dags.git", "t0k", ca)
        cfg: dict[str, Any] = {
            "airflow-k8s:airflow": {
                "dags": {"mode": "hostPath", "hostPath": {"path": "/d"}},
                "executor": "KubernetesExecutor",
            },
            "airflow-k8s:cluster": {"environment": "laptop", "storageClasses": ["standard"]},
        }
        switched = part_git.git_stack(cfg, server)
        assert cfg["airflow-k8s:airflow"]["dags"]["mode"] == "hostPath"  # a copy: the deployed config is kept
        raw = {k.split(":", 1)[1]: json.dumps(v) for k, v in switched.items()}
        stack = parse_stack({**raw, "gitToken": "t0k"}, {"gitToken"})
        bundle = stack.airflow.dags.git_bundle
        assert bundle is not None
        assert (bundle.repo, bundle.auth, bundle.refresh_interval) == (server.url, "token", part_git.REFRESH_SECONDS)
        assert bundle.ca_certificate == ca


class TestTheAirflowImage:
    def test_the_image_the_node_builds_has_what_a_git_bundle_fetches_with(self):
        from e2e.node import builders

        assert "git" in builders.AIRFLOW_DEBIAN  # the binary GitPython runs
        assert "git" in builders.AIRFLOW_EXTRAS.split(",")  # apache-airflow-providers-git (GitPython with it)


class TestTheBrokenDag:
    """Found on the node: the first broken DAG (`this is not python`) parses as a comparison and fails
    with a NameError, so the check for a SyntaxError in the import error could never pass."""

    def test_the_broken_dag_pushed_is_a_syntax_error(self):
        from e2e.node.part_git import BROKEN_DAG

        with pytest.raises(SyntaxError):
            compile(BROKEN_DAG, "git_bundle_broken.py", "exec")
