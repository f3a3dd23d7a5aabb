"""Part `git` of the node scenario (issue scenario 3, DAGs from git): Airflow 3's git DAG bundle
against a git server on the node's address.

What a user does to move the dev stack's DAGs into git: a private HTTPS git server (its own CA,
a token), the DAG folder pushed to it, and the stack switched from `hostPath` to
`airflow.dags.mode: gitBundle` with the documented steps (the hostPath DAG claim is dropped on
purpose: `identityChange`, `up`, `config rm`). Then, through the REST API:

- the repository's DAGs are there, from the bundle `dags`, the example DAGs and a probe DAG;
- a pushed change (the probe's description) appears within the bundle's refresh interval;
- a broken DAG pushed is an import error (`/api/v2/importErrors`), the scheduler and the DAG
  processor stay Ready with no restart;
- a run triggered meanwhile succeeds: its task pod fetched the run's bundle version itself;
- the probe and the broken file are removed again (pushed), and gone from the API.

The parts after this one see the git stack: the same example DAGs, served by the bundle, the
server running until the teardown.

git-sync, the other half of the issue's scenario, cannot run here: its image cannot be built
(the Go module k8s.io/git-sync is refused by the Go module proxy; docs/e2e.md).
"""

from __future__ import annotations

import copy
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.platform.deployed import ACCEPT_KEY

from ..harness import StepError
from ..kube import wait_for
from . import config, host
from .airflow_steps import OUTCOMES, dag_folder, restart_counts, wait_ready
from .parts import NodeRun, Part
from .tls import certificate

NAME = "git"
BUNDLE = "dags"
REFRESH_SECONDS = 10  # the bundle's refresh interval (the least airflow.dags.gitBundle allows)
APPEAR_WITHIN = REFRESH_SECONDS + 90  # a fetch, then the DAG processor parses the new version
PROBE_DAG = "git_bundle_probe"
PROBE_FILE = f"{PROBE_DAG}.py"
BROKEN_FILE = "git_bundle_broken.py"
RUN_DAG = "example_one_task"
WATCHED = ("scheduler", "dag-processor")


def probe_dag(description: str) -> str:
    return (
        "import pendulum\n"
        "from airflow.sdk import dag, task\n\n\n"
        f'@dag(dag_id="{PROBE_DAG}", description="{description}", schedule=None,\n'
        '     start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["git"])\n'
        f"def {PROBE_DAG}():\n"
        "    @task\n"
        "    def hello() -> None:\n"
        f'        print("{description}")\n\n'
        "    hello()\n\n\n"
        f"{PROBE_DAG}()\n"
    )


BROKEN_DAG = "from airflow.sdk import dag\n\n\ndef broken(:\n    pass\n"  # a SyntaxError, not a NameError


@dataclass
class GitServer:
    """The bare repository the server serves, a working clone the harness pushes from, the URL,
    the token and the CA the stack is given."""

    work: Path
    url: str
    token: str
    ca_pem: str

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.work, capture_output=True, text=True, check=False)
        if done.returncode:
            raise StepError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def push(self, message: str, files: dict[str, str | None]) -> str:
        """Commit `files` (None: delete) and push to main; the new commit's id."""
        for name, text in files.items():
            if text is None:
                (self.work / name).unlink()
            else:
                (self.work / name).write_text(text)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", message)
        self.git("push", "--quiet", "origin", "HEAD:main")
        return self.git("rev-parse", "--short", "HEAD")


def _git_identity() -> list[str]:
    return [
        "-c",
        "user.name=airflow-k8s e2e",
        "-c",
        "user.email=e2e@airflow-k8s.invalid",
        "-c",
        "init.defaultBranch=main",
    ]


def start_server(r: NodeRun) -> GitServer:
    """The repository (the checkout's dags/ and the probe DAG) and the server on the node's address."""
    base = r.folder / "git"
    if base.exists():
        shutil.rmtree(base)
    root, work = base / "repos", base / "work"
    root.mkdir(parents=True)
    bare = root / "dags.git"
    subprocess.run(["git", *_git_identity(), "init", "--quiet", "--bare", str(bare)], check=True)
    subprocess.run(["git", *_git_identity(), "clone", "--quiet", str(bare), str(work)], check=True, capture_output=True)
    dag_folder(work)
    (work / PROBE_FILE).write_text(probe_dag("version 1"))
    token = secrets.token_urlsafe(24)
    (base / "token").write_text(token + "\n")
    cert, key, ca_pem = certificate(base / "tls", config.NODE_ADDRESS)
    port = host.free_port(config.NODE_ADDRESS)
    url = f"https://{config.NODE_ADDRESS}:{port}/dags.git"
    server = GitServer(work, url, token, ca_pem)
    for option in _git_identity()[1::2]:
        name, _, value = option.partition("=")
        server.git("config", name, value)
    server.git("add", "--all")
    server.git("commit", "--quiet", "-m", "the example DAGs and a probe DAG")
    server.git("push", "--quiet", "origin", "HEAD:main")
    args = [
        sys.executable, "-m", "e2e.node.git_server", f"--listen={config.NODE_ADDRESS}:{port}", f"--root={root}",
        f"--cert={cert}", f"--key={key}", f"--token-file={base / 'token'}", f"--folder={r.folder}",
    ]  # fmt: skip
    r.node._spawn("git-server", args)

    def answers() -> str | None:
        why = r.node.dead()
        if why:
            raise StepError(why)
        try:
            socket.create_connection((config.NODE_ADDRESS, port), timeout=1).close()
        except OSError as exc:
            return str(exc)
        return None

    wait_for("the git server answering", answers, timeout=30, interval=0.3)
    # What a pod will do: clone over HTTPS with the token, trusting only the server's CA.
    check = base / "check"
    env = {"GIT_SSL_CAINFO": str(base / "tls" / "ca.crt"), "GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"}
    authed = url.replace("https://", f"https://git:{token}@")
    done = subprocess.run(["git", "clone", "--quiet", authed, str(check)], env=env, capture_output=True, text=True)
    if done.returncode or not (check / PROBE_FILE).is_file():
        raise StepError(f"a clone from {url} failed: {done.stderr.strip()}")
    shutil.rmtree(check)
    r.echo(f"    {url}: main at {server.git('rev-parse', '--short', 'HEAD')}, {len(list(work.glob('*.py')))} files")
    return server


def git_stack(cfg: dict[str, Any], server: GitServer) -> dict[str, Any]:
    """The stack with its DAGs from the git bundle (what a user changes in Pulumi.<stack>.yaml)."""
    out = copy.deepcopy(cfg)
    airflow = out["airflow-k8s:airflow"]
    airflow["dags"] = {
        "mode": "gitBundle",
        "gitBundle": {
            "repo": server.url,
            "name": BUNDLE,
            "trackingRef": "main",
            "refreshInterval": REFRESH_SECONDS,
            "auth": "token",
            "caCertificate": server.ca_pem,
        },
    }
    return out


def switch_stack(r: NodeRun, server: GitServer) -> None:
    """hostPath -> gitBundle the documented way: the token as a secret, the claim dropped on
    purpose (identityChange, the claim unprotected in the state), `pulumi up`, then identityChange
    removed. The claim and its folder stay in the cluster."""
    d = r.d
    airflow = d.airflow
    accepted = f"{airflow.get('namespace', 'airflow')}/{airflow.get('releaseName', 'airflow')}"
    d.config = git_stack(d.config, server)
    d.config[f"airflow-k8s:{ACCEPT_KEY}"] = accepted
    d.write()
    d.pulumi.run("config", "set", "--secret", "gitToken", server.token)
    # Keep the encrypted token in the config every later `write` puts back.
    d.config = yaml.safe_load((d.project / f"Pulumi.{d.stack}.yaml").read_text())["config"]
    # The claim and its volume are protected: Pulumi forgets them (the cluster keeps them) only once
    # unprotected (the second run found the volume: `airflow-dags-volume ... cannot be deleted`).
    release = airflow.get("releaseName", "airflow")
    resources = d.export()["deployment"]["resources"]
    for wanted in (f"PersistentVolumeClaim::{release}-dags-claim", f"PersistentVolume::{release}-dags-volume"):
        urns = [str(res["urn"]) for res in resources if str(res["urn"]).endswith(wanted)]
        if not urns:
            raise StepError(f"no {wanted} in the stack's state")
        d.pulumi.run("state", "unprotect", "--yes", urns[0])
    d.up()
    d.config.pop(f"airflow-k8s:{ACCEPT_KEY}")
    d.write()
    r.config = d.config


def import_errors(r: NodeRun) -> list[dict[str, Any]]:
    answer = r.api.request("GET", "/api/v2/importErrors?limit=100")
    errors: list[dict[str, Any]] = answer.get("import_errors") or []
    return errors


def watched_pods(r: NodeRun) -> list[dict[str, Any]]:
    pods = r.kube.list("v1", "Pod", r.namespace)
    return [p for p in pods if (p["metadata"].get("labels") or {}).get("component") in WATCHED]


def run(r: NodeRun) -> None:
    steps = r.h.steps

    def step(what: str, setup: bool = False) -> Any:
        return steps.step(f"[node:{NAME}] {what}", setup=setup)

    with step("a git server on the node's address (HTTPS, its own CA, a token) serving dags/ and a probe DAG", True):
        server = start_server(r)
    with step("the stack switched to the git DAG bundle (hostPath claim dropped on purpose): pulumi up"):
        started = time.monotonic()
        switch_stack(r, server)
        wait_ready(r.d, r.namespace)
        r.echo(f"    switched and every pod Ready in {time.monotonic() - started:.1f}s")

    with step(f"the repository's DAGs in the API, from the bundle '{BUNDLE}'; {RUN_DAG} triggered"):
        wanted = {*OUTCOMES, PROBE_DAG}

        def parsed() -> str | None:
            found = {d: r.api.dag(d).get("bundle_name") for d in wanted & set(r.api.dag_ids())}
            missing = sorted(d for d in wanted if found.get(d) != BUNDLE)
            return f"not from the bundle yet: {', '.join(missing)}" if missing else None

        started = time.monotonic()
        wait_for("the repository's DAGs parsed from the bundle", parsed, timeout=300, interval=3)
        r.echo(f"    {len(wanted)} DAGs from the bundle '{BUNDLE}' after {time.monotonic() - started:.1f}s")
        r.api.unpause(RUN_DAG)
        run_id = r.api.trigger(RUN_DAG)
        r.echo(f"    triggered {RUN_DAG}: run {run_id}")
        before = restart_counts(watched_pods(r))

    with step(f"a pushed change appears within the refresh interval ({REFRESH_SECONDS}s) and a parse"):
        commit = server.push("the probe's description, version 2", {PROBE_FILE: probe_dag("version 2")})
        started = time.monotonic()

        def changed() -> str | None:
            description = r.api.dag(PROBE_DAG).get("description")
            return None if description == "version 2" else f"description {description!r}"

        wait_for(f"{PROBE_DAG} at commit {commit}", changed, timeout=APPEAR_WITHIN, interval=2)
        r.echo(f"    commit {commit} in the API after {time.monotonic() - started:.1f}s")

    with step("a broken DAG pushed: an import error in the API; scheduler and dag-processor stay Ready"):
        commit = server.push("a broken DAG", {BROKEN_FILE: BROKEN_DAG})
        started = time.monotonic()
        seen: list[dict[str, Any]] = []

        def reported() -> str | None:
            seen[:] = [e for e in import_errors(r) if str(e.get("filename", "")).endswith(BROKEN_FILE)]
            return None if seen else "no import error yet"

        wait_for(f"the import error of {BROKEN_FILE}", reported, timeout=APPEAR_WITHIN, interval=2)
        trace = str(seen[0].get("stack_trace", ""))
        where = f"{seen[0].get('filename')} (bundle {seen[0].get('bundle_name')})"
        r.echo(f"    after {time.monotonic() - started:.1f}s: {where}")
        r.echo("    " + (trace.strip().splitlines() or ["(no trace)"])[-1][:200])
        if "SyntaxError" not in trace:
            raise StepError(f"the import error of {BROKEN_FILE} does not name the SyntaxError: {trace[:400]}")
        pods = watched_pods(r)
        after = restart_counts(pods)
        not_ready = [p["metadata"]["name"] for p in pods if not host.is_ready(p)]
        if after != before or not_ready or len(pods) < len(WATCHED):
            raise StepError(f"restarts before {before}, after {after}; not Ready: {not_ready or 'none'}")
        r.echo(f"    {', '.join(sorted(after))}: Ready, no restart")

    with step(f"{RUN_DAG}'s run succeeds: its task pod fetched the run's bundle version itself"):
        state = r.api.wait_run(RUN_DAG, run_id, 300)
        if state != "success":
            raise StepError(f"the run {run_id} of {RUN_DAG} is {state}")
        r.echo(f"    {RUN_DAG} run {run_id}: {state}")

    with step("the probe and the broken file removed (pushed): gone from the API; later parts see dags/ only"):
        commit = server.push("remove the probe and the broken DAG", {PROBE_FILE: None, BROKEN_FILE: None})
        started = time.monotonic()

        def gone() -> str | None:
            left = [PROBE_DAG] if PROBE_DAG in r.api.dag_ids() else []
            left += [str(e.get("filename")) for e in import_errors(r) if BROKEN_FILE in str(e.get("filename", ""))]
            return f"still there: {', '.join(left)}" if left else None

        wait_for(f"commit {commit} in the API", gone, timeout=APPEAR_WITHIN, interval=2)
        r.echo(f"    gone after {time.monotonic() - started:.1f}s")


PART = Part(NAME, run)
