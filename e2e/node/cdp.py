"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, each a JSON text ended by a NUL
byte), so no port is opened and no websocket client is needed. Stdlib only.

The browser is kept on the machine: every host (`--host-resolver-rules`),
but the ones named (by default 127.0.0.1) fail to resolve (`--host-resolver-rules`, which covers
addresses too), no proxy, no background networking, component updates or sync.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BINARIES = ("chromium", "chromium-browser")
WINDOW = (1280, 800)
LOOPBACK = ("127.0.0.1",)


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("no headless Chromium: install Debian's package `chromium` (apt-get install chromium)")


def chromium_args(
    user_data: Path, hosts: tuple[str, ...] = LOOPBACK, window: tuple[int, int] = WINDOW, root: bool | None = None
) -> list[str]:
    """The flags: headless, a throwaway profile, a fixed window, nothing that reaches out: every
    host but `hosts` fails to resolve (the rule covers addresses too)."""
    rules = ", ".join(["MAP * ~NOTFOUND", *(f"EXCLUDE {h}" for h in hosts)])
    args = [
        "--headless",
        "--remote-debugging-pipe",
        f"--user-data-dir={user_data}",
        f"--window-size={window[0]},{window[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-dev-shm-usage",
        "--no-proxy-server",
        f"--host-resolver-rules={rules}",
        "--lang=en-US",
        "about:blank",
    ]
    if (os.geteuid() == 0) if root is None else root:
        args.insert(0, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return args


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@dataclass
class Browser:
    """One headless Chromium and one page (a tab) in it. Use as a context manager."""

    hosts: tuple[str, ...] = LOOPBACK  # the only hosts the browser may reach
    window: tuple[int, int] = WINDOW
    timeout: float = 30  # seconds for one protocol command
    binary: str = ""
    _proc: subprocess.Popen[bytes] | None = None
    _send: int = -1
    _recv: int = -1
    _buffer: bytes = b""
    _next_id: int = 0
    _session: str = ""
    _profile: Path | None = None
    _log: Path | None = None

    def __enter__(self) -> Browser:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        binary = self.binary or find_chromium()
        self._profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()
        # bash puts the browser's two pipe ends on fds 3 and 4, where Chromium expects them
        # (first moved above 9, so that neither is 3 or 4 already).
        cmd_r, out_w = (_above_nine(fd) for fd in (cmd_r, out_w))
        script = f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-'
        self._log = self._profile / "chromium.log"
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                ["bash", "-c", script, binary, *chromium_args(self._profile, self.hosts, self.window)],
                pass_fds=(cmd_r, out_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        os.close(cmd_r)
        os.close(out_w)
        self._send, self._recv = cmd_w, out_r
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.resize(*self.window)

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                with contextlib.suppress(BrowserError):
                    self.command("Browser.close", timeout=5)
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, 9)
                    self._proc.wait()
            self._proc = None
        for fd in (self._send, self._recv):
            if fd >= 0:
                os.close(fd)
        self._send = self._recv = -1
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def output(self) -> str:
        """What Chromium printed (its last lines), for an error message."""
        if self._log is None:
            return "(not started)"
        try:
            return self._log.read_text(errors="replace")[-2000:]
        except OSError as exc:
            return f"(no output: {exc})"

    # --- the protocol --------------------------------------------------------------------

    def command(self, method: str, params: dict[str, Any] | None = None, session: str = "", timeout: float = 0) -> Any:
        """Send one command, wait for its answer (events in between are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._send, data) :]
        except OSError as exc:
            raise BrowserError(f"{method}: Chromium is gone ({exc}); it printed:\n{self.output()}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            answer = self._read(deadline, method)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
                return answer.get("result", {})

    def page(self, method: str, params: dict[str, Any] | None = None, timeout: float = 0) -> Any:
        return self.command(method, params, session=self._session, timeout=timeout)

    def _read(self, deadline: float, method: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer from Chromium within {self.timeout:.0f}s")
            ready, _, _ = select.select([self._recv], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._recv, 1 << 20)
            if not chunk:
                raise BrowserError(f"{method}: Chromium closed its pipe; it printed:\n{self.output()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    # --- what a test needs ----------------------------------------------------------------

    def set_cookie(self, url: str, name: str, value: str, http_only: bool = True) -> None:
        ok = self.page(
            "Network.setCookie", {"url": url, "name": name, "value": value, "httpOnly": http_only, "sameSite": "Lax"}
        )
        if not ok.get("success", True):
            raise BrowserError(f"Chromium refused the cookie {name} for {url}")

    def resize(self, width: int, height: int) -> None:
        """The page's viewport (what a screenshot shows), at one device pixel per CSS pixel."""
        params = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.page("Emulation.setDeviceMetricsOverride", params)

    def navigate(self, url: str) -> None:
        """Go to `url` and wait until its document has loaded (Page.navigate answers once the new
        document is committed, before it is parsed). A single-page app draws later: poll `text`."""
        answer = self.page("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"{url}: {answer['errorText']}")
        deadline = time.monotonic() + self.timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: not loaded within {self.timeout:.0f}s")
            time.sleep(0.1)

    def evaluate(self, expression: str) -> Any:
        answer = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression}: {answer['exceptionDetails'].get('text')}")
        return answer.get("result", {}).get("value")

    def text(self) -> str:
        """What the page shows: the body's rendered text."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def url(self) -> str:
        return str(self.evaluate("location.href") or "")

    def screenshot(self) -> bytes:
        answer = self.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        return base64.b64decode(answer["data"])
