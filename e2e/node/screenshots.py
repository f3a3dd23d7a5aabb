"""Screenshots of the real Airflow UI, each taken once the page shows what it must: the DAG list
with the DAG, the run's page with the run a success, the task's page with its log's output.

The browser logs in as the UI does after a login: Airflow 3 (3.1.1 and later) keeps the user's
JWT in the HttpOnly cookie `_token`, and the api-server accepts it for the UI's own requests; the
token comes from `POST /auth/token` (AirflowApi.log_in). Pages are the UI's routes: `/dags`,
`/dags/<dag>/runs/<run>`, `/dags/<dag>/runs/<run>/tasks/<task>` (whose first tab is the log).

A page that never shows what it must fails naming what is missing, the page's address and what
it showed; its screenshot is kept beside the others as `<name>.failed.png`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..harness import StepError
from .airflow_api import AirflowApi, AirflowApiError
from .cdp import WINDOW, Browser, BrowserError

# The example the screenshots show (dags/example_etl.py): its DAG, its one task, what it prints.
DAG = "example_etl"
TASK = "extract"
OUTPUT = "This can be the extract part of an ETL"
TOKEN_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN
PAGE_TIMEOUT = 60.0  # seconds for a page to show what it must (the UI loads its data after rendering)
SETTLE = 1.5  # seconds between "it shows" and the screenshot: icons and late rows drawn
# Pages are read in a window this tall and shot at the browser's own size (1280x800): the UI's log
# view draws only the rows in view and 10 more (a virtual list kept at its end), about 190 here.
READ_HEIGHT = 4000
# The row of the UI's log view that ends with `text`, as the number its address takes (`#<n>`
# scrolls the view to row n and marks it), else 0.
MARK_ROW = """(() => {
  const rows = [...document.querySelectorAll('[data-testid^="virtualized-item-"]')];
  const row = rows.find((r) => r.innerText.trim().endsWith(%s));
  return row ? Number(row.dataset.index) + 1 : 0;
})()"""


# How the UI names a state (its English locale, common.json `states`).
STATES = (
    "Deferred", "Failed", "No Status", "Queued", "Removed", "Restarting", "Running", "Scheduled",
    "Skipped", "Success", "Up For Reschedule", "Up For Retry", "Upstream Failed",
)  # fmt: skip


class ScreenshotError(RuntimeError):
    pass


@dataclass(frozen=True)
class Page:
    """One screenshot: where (a path under the UI's address), what it is, what it must show."""

    name: str  # the file's stem
    what: str  # for messages: "the DAG list"
    path: str
    check: Callable[[str], str | None]  # the page's text -> None, or what is missing
    mark: str = ""  # a log line that ends with this is scrolled to and marked before the screenshot


def quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def shows_dag(dag_id: str) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        if dag_id in lines(text):
            return None
        return f"no row for the DAG {dag_id}"

    return check


def shows_success(label: str, what: str) -> Callable[[str], str | None]:
    """The page's heading `label` is followed by its state badge, and that reads Success."""

    def check(text: str) -> str | None:
        found = lines(text)
        states = [found[i + 1] for i, line in enumerate(found[:-1]) if line == label and found[i + 1] in STATES]
        if "Success" in states:
            return None
        if states:
            return f"{what} {label} is {' / '.join(dict.fromkeys(states))}, not Success"
        return f"no state shown for {what} {label}"

    return check


def shows_output(task_id: str, output: str) -> Callable[[str], str | None]:
    """A log line that ends with the task's output (the line of the command that printed it, which
    quotes it, does not end with it)."""

    def check(text: str) -> str | None:
        if any(line.endswith(output) for line in lines(text)):
            return None
        return f"no line of {task_id}'s log ends with {output!r}"

    return check


def both(*checks: Callable[[str], str | None]) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        missing = [m for m in (c(text) for c in checks) if m]
        return "; ".join(missing) or None

    return check


def lines(text: str) -> list[str]:
    """The page's text as the browser lays it out, one stripped line each, blank ones dropped."""
    return [stripped for line in text.splitlines() if (stripped := line.strip())]


def pages(dag_id: str, run_id: str, task_id: str, output: str) -> list[Page]:
    run = f"/dags/{quote(dag_id)}/runs/{quote(run_id)}"
    return [
        Page("airflow-dag-list", "the DAG list", "/dags", shows_dag(dag_id)),
        Page("airflow-dag-run", f"the run of {dag_id}", run, shows_success(run_id, "the run")),
        Page(
            "airflow-task-log",
            f"the log of {task_id}",
            f"{run}/tasks/{quote(task_id)}",
            both(shows_success(task_id, "the task"), shows_output(task_id, output)),
            mark=output,
        ),
    ]


def login_page(url: str) -> bool:
    """The UI sends a visitor without a valid token to the auth manager's login form."""
    return bool(re.search(r"/(auth/)?login\b", urllib.parse.urlsplit(url).path))


def excerpt(text: str, limit: int = 900) -> str:
    """The page's text on one line, its end if long (the menus come first, the content last)."""
    flat = " | ".join(lines(text))
    return flat if len(flat) <= limit else "... " + flat[-limit:]


class Screen(Protocol):
    """What `take` needs of a browser (cdp.Browser)."""

    def set_cookie(self, url: str, name: str, value: str, http_only: bool = True) -> None: ...
    def resize(self, width: int, height: int) -> None: ...
    def navigate(self, url: str) -> None: ...
    def evaluate(self, expression: str) -> object: ...
    def text(self) -> str: ...
    def url(self) -> str: ...
    def screenshot(self) -> bytes: ...


def take(
    browser: Screen,
    base_url: str,
    token: str,
    wanted: list[Page],
    out: Path,
    timeout: float = PAGE_TIMEOUT,
    settle: float = SETTLE,
    window: tuple[int, int] = WINDOW,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """Each page in `wanted`, logged in with `token`: wait until it shows what it must (read in a
    window READ_HEIGHT tall), mark its line, then write `<out>/<name>.png` (`window` big). The first
    page that does not show it fails (its screenshot kept)."""
    out.mkdir(parents=True, exist_ok=True)
    base = base_url.rstrip("/")
    browser.set_cookie(base + "/", TOKEN_COOKIE, token)
    written = []
    for page in wanted:
        url = base + page.path
        browser.resize(window[0], READ_HEIGHT)
        browser.navigate(url)
        started = time.monotonic()
        missing: str | None = "nothing read yet"
        text = ""
        while time.monotonic() - started < timeout:
            try:
                text, at = browser.text(), browser.url()
            except BrowserError as exc:  # the page navigating meanwhile (the UI's own redirects)
                missing = f"the page did not answer: {exc}"
                time.sleep(0.5)
                continue
            if login_page(at):
                missing = f"the login page instead: the {TOKEN_COOKIE} cookie was not accepted"
                break
            missing = page.check(text)
            if missing is None:
                break
            time.sleep(0.5)
        if page.mark and missing is None:
            row = browser.evaluate(MARK_ROW % json.dumps(page.mark))
            if isinstance(row, int) and row > 0:
                browser.navigate(f"{url}#{row}")
        browser.resize(*window)
        if missing is not None:
            failed = out / f"{page.name}.failed.png"
            failed.write_bytes(browser.screenshot())
            raise ScreenshotError(
                f"{page.what} ({browser.url()}) after {time.monotonic() - started:.0f}s: {missing}.\n"
                f"  The page showed: {excerpt(text)}\n  Its screenshot: {failed}"
            )
        time.sleep(settle)
        png = browser.screenshot()
        path = out / f"{page.name}.png"
        path.write_bytes(png)
        written.append(path)
        echo(f"{page.what}: shown after {time.monotonic() - started:.1f}s; {path.name} ({len(png) // 1024} KiB)")
    return written


def screenshot_run(
    api: AirflowApi, dag_id: str, run_id: str, task_id: str, output: str, out: Path, echo: Callable[[str], None] = print
) -> list[Path]:
    """The three screenshots of one run, in headless Chromium, logged in with the API's token."""
    if not api.token:
        raise ScreenshotError("log in first (AirflowApi.log_in): the browser gets the API's token as its cookie")
    with Browser(hosts=(urllib.parse.urlsplit(api.base_url).hostname or "127.0.0.1",)) as browser:
        return take(browser, api.base_url, api.token, pages(dag_id, run_id, task_id, output), out, echo=echo)


# --- python -m e2e.node.screenshots ------------------------------------------------------------


def latest_success(api: AirflowApi, dag_id: str) -> str:
    """The newest successful run of the DAG."""
    path = f"/api/v2/dags/{quote(dag_id)}/dagRuns?state=success&order_by=-run_after&limit=1"
    runs = api.request("GET", path)["dag_runs"]
    if not runs:
        raise ScreenshotError(f"{dag_id} has no successful run: trigger it first (or pass --trigger)")
    return str(runs[0]["dag_run_id"])


def of_run(
    api: AirflowApi,
    run_id: str,
    tasks: list[dict[str, object]],
    folder: Path,
    keep: Path | None,
    echo: Callable[[str], None],
) -> list[Path]:
    """The node scenario's step: the three pages of DAG's run `run_id` in headless Chromium
    (logged in with the API's token), each checked for what it must show, their PNGs in `folder`
    and copied to `keep`; a page that does not show it is a StepError."""
    task_ids = [str(t["task_id"]) for t in tasks]
    if TASK not in task_ids:
        raise StepError(f"{DAG} has no task {TASK} to show the log of (its tasks: {', '.join(task_ids)})")
    try:
        written = screenshot_run(api, DAG, run_id, TASK, OUTPUT, folder, echo=lambda line: echo(f"    {line}"))
    except (ScreenshotError, BrowserError) as exc:
        raise StepError(f"the Airflow UI: {exc}") from None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copyfile(path, keep / path.name)
        echo(f"screenshots kept in {keep}: {', '.join(p.name for p in written)}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.node.screenshots",
        description="Screenshots of a running Airflow's UI (the DAG list, a successful run, a task's log), "
        "each taken once the page shows what it must. The password is read from $AIRFLOW_K8S_UI_PASSWORD, "
        "else asked for.",
    )
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('AIRFLOW_K8S_UI_PORT', '8080')}")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--dag", default=DAG)
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--output", default=OUTPUT, help="what the task's log must show (a line's end)")
    parser.add_argument("--run", default="", help="the run (default: the DAG's newest successful run)")
    parser.add_argument("--trigger", action="store_true", help="trigger a run and wait for it first")
    parser.add_argument(
        "--out", type=Path, default=Path("docs/images"), help="where the PNGs go (default: docs/images)"
    )
    args = parser.parse_args(argv)
    password = os.environ.get("AIRFLOW_K8S_UI_PASSWORD") or getpass.getpass(f"password of {args.user}: ")
    api = AirflowApi(args.url)
    try:
        api.log_in(args.user, password)
        run_id = args.run
        if args.trigger:
            api.unpause(args.dag)
            run_id = api.trigger(args.dag)
            print(f"triggered {args.dag}: {run_id}; run {api.wait_run(args.dag, run_id, 600)}")
        run_id = run_id or latest_success(api, args.dag)
        screenshot_run(api, args.dag, run_id, args.task, args.output, args.out)
    except (ScreenshotError, BrowserError, AirflowApiError, OSError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
