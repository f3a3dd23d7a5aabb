"""Images for the real node, built here from upstream software and never pulled.

    python -m e2e.node.images build REF...            # build what is not cached, print the archives
    python -m e2e.node.images build --stack dev       # every image the dev stack's preview renders
    python -m e2e.node.images build --stack dev --import /run/containerd/containerd.sock
    python -m e2e.node.images list                    # recipes, and which references are cached
    python -m e2e.node.images prune                   # remove archives built from inputs that changed
    python -m e2e.node.images check apache/airflow:3.2.0   # run the image's processes (see image_check)

Each reference is built by the recipe that covers it (recipes.py) into an archive in
`docker save` layout named exactly as the reference (oci.py), cached by the content key of
the recipe's inputs (`default_cache()`). `unbuildable()` names, before anything is deployed,
the references no recipe can build and why. docs/images.md lists what each image holds and
how it differs from the official one.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2e.node import debian
from e2e.node.builders import Context
from e2e.node.oci import write_archive
from e2e.node.recipes import RECIPES, REPO, Selected, cache_key, reasons, select, split

Echo = Callable[[str], None]


def say(line: str) -> None:
    """The default progress echo: one line, at once (also when the output is a pipe)."""
    print(line, flush=True)


class ImageError(RuntimeError):
    """An image cannot be built (no recipe, or its build failed); the message says which and why."""


def default_cache() -> Path:
    explicit = os.environ.get("AIRFLOW_K8S_IMAGES_CACHE")
    return Path(explicit).expanduser() if explicit else Path.home() / ".cache" / "airflow-k8s-images"


def unbuildable(refs: Iterable[str]) -> list[str]:
    """The references no recipe builds (see `reasons` for why)."""
    return sorted(reasons(refs))


def explain(refs: Iterable[str]) -> str:
    """One line per reference that cannot be built, naming it and why ('' when all can)."""
    return "\n".join(f"{ref}: {why}" for ref, why in sorted(reasons(refs).items()))


def archive_path(cache: Path, selected: Selected, key: str) -> Path:
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", selected.tag)
    return cache / "images" / f"{selected.recipe.name}-{tag}-{key[:16]}.tar"


def cached(refs: Iterable[str], cache: Path | None = None) -> dict[str, Path | None]:
    """Each buildable reference and its archive when one is cached (else None)."""
    cache = cache or default_cache()
    found: dict[str, Path | None] = {}
    for ref in refs:
        selected = select(ref)
        if selected is None or selected.recipe.build is None:
            continue
        path = archive_path(cache, selected, cache_key(selected))
        found[ref] = path if path.is_file() else None
    return found


@contextmanager
def _locked(cache: Path, echo: Echo) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"images: waiting for another build using {cache}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run_sh_uv_version(repo: Path = REPO) -> str:
    """The uv version run.sh installs (one pin for the whole repository)."""
    match = re.search(r"^UV_VERSION=(\S+)$", (repo / "run.sh").read_text(), re.MULTILINE)
    if match is None:
        raise ImageError("run.sh names no UV_VERSION")
    return match.group(1)


def uv_binary(cache: Path, echo: Echo) -> Path:
    """uv from PATH, from run.sh's .venv-uv, or installed once into the cache with pip."""
    for candidate in (shutil.which("uv"), REPO / ".venv-uv/bin/uv", cache / "uv-tool/bin/uv"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    version = run_sh_uv_version()
    started = time.monotonic()
    venv = cache / "uv-tool"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", f"uv=={version}"], check=True)
    echo(f"images: uv {version} installed into {venv} ({time.monotonic() - started:.1f} s)")
    return venv / "bin/uv"


def ensure_build_tools(cache: Path, echo: Echo = say) -> None:
    """Install the Debian packages builds need (debootstrap, gcc, libc6-dev) when missing;
    ImageError when that cannot be done (not root, or apt fails)."""
    missing = debian.missing_host_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageError(f"image builds need root, and these Debian packages: {' '.join(missing)}")
    started = time.monotonic()
    try:
        debian.ensure_host_packages(cache / "logs" / "host-packages.log")
    except debian.BuildError as exc:
        raise ImageError(str(exc)) from exc
    echo(f"images: apt-get install {' '.join(missing)} ({time.monotonic() - started:.1f} s)")
    still = debian.missing_host_commands()
    if still:
        raise ImageError(f"still missing after the install: {' '.join(still)}")


def _human(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def build(refs: Iterable[str], cache: Path | None = None, echo: Echo = say) -> dict[str, Path]:
    """Each reference's archive, building the ones not cached. Raises ImageError naming every
    reference that cannot be built before building anything."""
    refs = list(dict.fromkeys(refs))
    problems = explain(refs)
    if problems:
        raise ImageError(f"no build for:\n{problems}")
    cache = cache or default_cache()
    result: dict[str, Path] = {}
    removals: list[threading.Thread] = []
    with _locked(cache, echo):
        ensure_build_tools(cache, echo)
        removals.append(_discard(None, cache / "trash"))
        try:
            for ref in refs:
                result[ref] = _build_one(ref, cache, echo, removals)
        finally:
            for removal in removals:
                removal.join()
    return result


def _discard(tree: Path | None, trash: Path) -> threading.Thread:
    """Move `tree` into `trash` and remove everything there while the next image builds
    (deleting a large tree takes long); what an interrupted build left goes the same way."""
    trash.mkdir(parents=True, exist_ok=True)
    if tree is not None and tree.exists():
        tree.rename(trash / uuid.uuid4().hex)
    thread = threading.Thread(target=_remove_all, args=(list(trash.iterdir()),), daemon=True)
    thread.start()
    return thread


def _remove_all(trees: list[Path]) -> None:
    for tree in trees:
        shutil.rmtree(tree, ignore_errors=True)


def _build_one(ref: str, cache: Path, echo: Echo, removals: list[threading.Thread]) -> Path:
    selected = select(ref)
    assert selected is not None and selected.recipe.build is not None  # checked by build()
    key = cache_key(selected)
    out = archive_path(cache, selected, key)
    if out.is_file():
        echo(f"image {ref}: cached ({_human(out.stat().st_size)}, {out.name})")
        return out
    started = time.monotonic()
    work = cache / "work" / key[:16]
    ctx = Context(
        label=ref,
        cache=cache,
        repo=REPO,
        work=work,
        log=cache / "logs" / f"{out.stem}.log",
        echo=echo,
        uv=lambda: uv_binary(cache, echo),
    )
    ctx.log.unlink(missing_ok=True)
    try:
        config = selected.recipe.build(ctx, selected.params)
        if selected.recipe.base:
            debian.finish(ctx.rootfs)
        with ctx.step("layer and archive"):
            write_archive(ctx.rootfs, [selected.name], config, out)
    except (debian.BuildError, subprocess.CalledProcessError, OSError) as exc:
        raise ImageError(f"{ref}: build failed: {exc}") from exc
    finally:
        removals.append(_discard(work, cache / "trash"))
    seconds = time.monotonic() - started
    size = out.stat().st_size
    meta = {"ref": ref, "name": selected.name, "key": key, "seconds": round(seconds, 1), "bytes": size}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    echo(f"image {ref}: built in {seconds:.1f} s ({_human(size)}, {out.name})")
    return out


def import_archives(archives: Iterable[Path], address: str, echo: Echo = say, ctr: str = "ctr") -> None:
    """`ctr images import` of each archive into containerd's k8s.io namespace (where the CRI
    looks), through the socket at `address`."""
    for archive in archives:
        started = time.monotonic()
        cmd = [ctr, "--address", address, "--namespace", "k8s.io", "images", "import", str(archive)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise ImageError(f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
        echo(f"imported {archive.name} ({time.monotonic() - started:.1f} s)")


# ---------------------------------------------------------------------------------------------
# The images a stack needs


def pod_images(objects: Iterable[dict[str, Any]]) -> set[str]:
    """Every container image of the pod specs among `objects` (workloads, Jobs, CronJobs, Pods)."""
    from e2e.checks import pod_spec_of

    found: set[str] = set()
    for obj in objects:
        spec = pod_spec_of(obj) if isinstance(obj, dict) else None
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for container in (spec or {}).get(key) or []:
                if container.get("image"):
                    found.add(container["image"])
    return found


# Operators that make pods at run time, and where the rendered objects name those pods' images.
OPERATED_KINDS = ("Prometheus", "Alertmanager", "ThanosRuler")  # prometheus-operator: spec.image
CONFIG_RELOADER_FLAG = "--prometheus-config-reloader="  # prometheus-operator's argument
SPARK_OPERATOR = "ghcr.io/kubeflow/spark-operator/controller"


def operator_images(objects: Iterable[dict[str, Any]], repo: Path = REPO) -> set[str]:
    """The images of pods the stack's operators make at run time, as the rendered objects name
    them: a Prometheus's (Alertmanager's, ThanosRuler's) `spec.image`, the config reloader
    prometheus-operator's `--prometheus-config-reloader` names, and, when the Spark operator
    runs, the images of the SparkApplications the example DAGs submit (dags/spark/*.yaml)."""
    objects = [obj for obj in objects if isinstance(obj, dict)]
    found: set[str] = set()
    for obj in objects:
        if obj.get("kind") in OPERATED_KINDS and (obj.get("spec") or {}).get("image"):
            found.add(obj["spec"]["image"])
    for image, args in _containers(objects):
        found.update(arg.split("=", 1)[1] for arg in args if arg.startswith(CONFIG_RELOADER_FLAG))
        if split(image)[0] == SPARK_OPERATOR:
            found |= spark_application_images(repo)
    return found


def _containers(objects: Iterable[dict[str, Any]]) -> Iterator[tuple[str, list[str]]]:
    from e2e.checks import pod_spec_of

    for obj in objects:
        spec = pod_spec_of(obj) or {}
        for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            yield container.get("image", ""), [*(container.get("command") or []), *(container.get("args") or [])]


def spark_application_images(repo: Path = REPO) -> set[str]:
    """The images of the SparkApplications in dags/spark/*.yaml (spec.image, the driver's and
    the executors' own)."""
    import yaml

    found: set[str] = set()
    for path in sorted((repo / "dags" / "spark").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "SparkApplication":
                spec = doc.get("spec") or {}
                for part in (spec, spec.get("driver") or {}, spec.get("executor") or {}):
                    if part.get("image"):
                        found.add(part["image"])
    return found


def dag_images(repo: Path = REPO) -> set[str]:
    """The task images the example DAGs run by default (dags/k8s_conventions.py)."""
    text = (repo / "dags/k8s_conventions.py").read_text()
    return set(re.findall(r'^[A-Z_]*IMAGE = "([^"]+)"', text, re.MULTILINE))


def stack_images(stack: str, repo: Path = REPO, echo: Echo | None = None) -> set[str]:
    """The images of every pod the offline preview of `stack` renders (charts and the program's
    own objects, the KubernetesExecutor's pod template included), and of the pods its
    operators make (`operator_images`)."""
    from components.offline.preview import preview

    with tempfile.TemporaryDirectory(prefix="stack-images-") as out:
        result = preview(repo, stack, Path(out), run_checkov=False, echo=echo, releases_exist=False)
    return pod_images(result.objects) | operator_images(result.objects, repo)


# ---------------------------------------------------------------------------------------------
# Command line


def archives(cache: Path) -> list[tuple[dict[str, Any], bool]]:
    """Each archive in the cache (its record) and whether it is current: built from what the
    recipes and files of this checkout make for its reference now."""
    found = []
    for record_file in sorted((cache / "images").glob("*.json")):
        record = json.loads(record_file.read_text())
        record["archive"] = record_file.with_suffix(".tar")
        selected = select(record["ref"])
        current = selected is not None and selected.recipe.build is not None and cache_key(selected) == record["key"]
        found.append((record, current))
    return found


def prune(cache: Path, echo: Echo = say) -> int:
    """Remove the archives no reference would use now (an input changed since); bytes freed."""
    freed = 0
    with _locked(cache, echo):
        for record, current in archives(cache):
            if not current:
                freed += record["bytes"]
                record["archive"].unlink(missing_ok=True)
                record["archive"].with_suffix(".json").unlink()
                echo(f"removed {record['archive'].name} (stale: {record['name']})")
    return freed


def _list(cache: Path) -> int:
    print(f"cache: {cache}")
    for recipe in RECIPES:
        state = f"UNAVAILABLE: {recipe.unavailable}" if recipe.unavailable else recipe.summary
        print(f"{recipe.name:20} {recipe.repository}:{recipe.tag}\n{'':20} {state}")
    for record, current in archives(cache):
        print(
            f"{'cached' if current else 'stale '}: {record['name']}  {_human(record['bytes'])}  "
            f"built in {record['seconds']} s  ({record['archive'].name})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.node.images", description=__doc__.split("\n\n")[0])
    where = "default: $AIRFLOW_K8S_IMAGES_CACHE, else ~/.cache/airflow-k8s-images"
    parser.add_argument("--cache", type=Path, default=None, help=f"archive cache ({where})")
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build (or find cached) the archives of references")
    build_cmd.add_argument("refs", nargs="*")
    build_cmd.add_argument("--stack", action="append", default=[], help="add every image this stack renders")
    build_cmd.add_argument("--no-dags", action="store_true", help="with --stack: leave out the DAGs' task images")
    build_cmd.add_argument("--import", dest="address", help="then import them into containerd at this socket")
    build_cmd.add_argument(
        "--keep-going", action="store_true", help="build what can be built, name the rest (exit 3 when any is left out)"
    )
    sub.add_parser("list", help="the recipes, and the archives in the cache (current or stale)")
    sub.add_parser("prune", help="remove the stale archives (built from inputs that changed since)")
    check_cmd = sub.add_parser("check", help="run an Airflow image's processes without a cluster")
    check_cmd.add_argument("ref")
    args = parser.parse_args(argv)
    cache = args.cache or default_cache()
    if args.command == "list":
        return _list(cache)
    if args.command == "prune":
        print(f"images: {_human(prune(cache))} freed")
        return 0
    if args.command == "check":
        from e2e.node.image_check import check

        return check(args.ref, cache)
    refs = list(args.refs)
    for stack in args.stack:
        refs += sorted(stack_images(stack, echo=say))
        if not args.no_dags:
            refs += sorted(dag_images())
    refs = list(dict.fromkeys(refs))
    if not refs:
        parser.error("name references, or --stack")
    left_out = reasons(refs)
    if left_out:
        print(f"cannot build{' (left out)' if args.keep_going else ''}:\n{explain(refs)}", file=sys.stderr)
        if not args.keep_going:
            return 2
    started = time.monotonic()
    try:
        built = build([ref for ref in refs if ref not in left_out], cache)
        if args.address:
            import_archives(built.values(), args.address)
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for ref, path in built.items():
        print(f"{ref}\t{path}")
    print(f"images: {len(built)} ready in {time.monotonic() - started:.1f} s")
    return 3 if left_out else 0


if __name__ == "__main__":
    sys.exit(main())
