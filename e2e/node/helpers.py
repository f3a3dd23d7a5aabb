"""The node's two helpers, each a process of its own that outlives the command that started it
(`./run.sh up` returns, they stay; `./run.sh down` stops them with the rest of the node):

    python -m e2e.node.helpers provisioner --kubeconfig K --folder F --node N --log L
        the default StorageClass's provisioner (e2e.volumes, real folders)
    python -m e2e.node.helpers forward --listen 127.0.0.1:8080 --to 10.96.12.34:8080 --folder F
        a TCP forwarder from 127.0.0.1 to a Service address (kube-proxy takes it to a pod)

`--folder` is the node's folder: the node's cleanup recognises its processes by it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from pathlib import Path

import yaml

from ..kube import Kube
from ..volumes import HostFolders, Provisioner
from . import config

COPY_CHUNK = 65536


def kube_from(kubeconfig: Path) -> Kube:
    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    return Kube(
        cluster["server"],
        Path(cluster["certificate-authority"]),
        Path(user["client-certificate"]),
        Path(user["client-key"]),
    )


def run_provisioner(args: argparse.Namespace) -> int:
    cls = config.storage_class()
    host = HostFolders(
        node=args.node, classes={cls["metadata"]["name"]: cls["reclaimPolicy"]}, provisioner=cls["provisioner"]
    )
    provisioner = Provisioner(kube_from(args.kubeconfig), args.folder / "volumes", args.log, host=host)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    provisioner.start()
    stop.wait()
    provisioner.stop()
    return 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(COPY_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _forward(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*target), timeout=10)
        except (OSError, TimeoutError):
            client_w.close()
            return
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    server = await asyncio.start_server(handle, *listen)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    async with server:
        await done.wait()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def run_forward(args: argparse.Namespace) -> int:
    listen = _address(args.listen)
    if listen[0] != "127.0.0.1":
        print("forward: listens on 127.0.0.1 only", file=sys.stderr)
        return 2
    asyncio.run(_forward(listen, _address(args.to)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.node.helpers", description=__doc__)
    sub = parser.add_subparsers(dest="helper", required=True)
    prov = sub.add_parser("provisioner")
    prov.add_argument("--kubeconfig", type=Path, required=True)
    prov.add_argument("--folder", type=Path, required=True)
    prov.add_argument("--node", required=True)
    prov.add_argument("--log", type=Path, required=True)
    fwd = sub.add_parser("forward")
    fwd.add_argument("--listen", required=True)
    fwd.add_argument("--to", required=True)
    fwd.add_argument("--folder", type=Path, required=True)
    args = parser.parse_args(argv)
    return run_provisioner(args) if args.helper == "provisioner" else run_forward(args)


if __name__ == "__main__":
    sys.exit(main())
