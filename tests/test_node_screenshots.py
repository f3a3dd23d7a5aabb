"""The UI screenshots' checks (e2e/node/screenshots.py) on the text real Airflow 3.2.0 pages showed
(tests/fixtures/airflow_ui: `document.body.innerText` of the DAG list, a run's page and a task's
log tab, for a successful and a failed run), `take` with a stand-in browser, and headless
Chromium itself (e2e/node/cdp.py) against a page served on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import StepError
from e2e.node import screenshots
from e2e.node.airflow_api import AirflowApi
from e2e.node.cdp import Browser, BrowserError, chromium_args
from e2e.node.screenshots import DAG, OUTPUT, TASK, ScreenshotError, pages, shows_dag, shows_output, shows_success
from tests.helpers import ROOT

UI = ROOT / "tests" / "fixtures" / "airflow_ui"
RUN = "manual__2026-12-07T04:26:09.857396+00:00"
FAILED_RUN = "manual__2026-12-07T04:30:16.102188+00:00"
PNG = b"\x89PNG\r\n\x1a\n"
BASE = "http://127.0.0.1:8080"


def page(name: str) -> str:
    return (UI / f"{name}.txt").read_text()


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class TestTheDagList:
    def test_a_list_with_the_dag_passes(self):
        assert shows_dag(DAG)(page("dag-list")) is None

    def test_a_list_without_the_dag_names_it(self):
        assert shows_dag("example_missing")(page("dag-list")) == "no row for the DAG example_missing"

    def test_a_dag_id_inside_another_line_does_not_count(self):
        assert shows_dag("example")(page("dag-list")) == "no row for the DAG example"


class TestTheRunPage:
    def test_a_successful_run_passes(self):
        assert shows_success(RUN, "the run")(page("dag-run-success")) is None

    def test_a_failed_run_is_named_with_its_state(self):
        check = shows_success(FAILED_RUN, "the run")
        assert check(page("dag-run-failed")) == f"the run {FAILED_RUN} is Failed, not Success"

    def test_a_page_of_another_run_shows_no_state_for_this_one(self):
        assert shows_success(RUN, "the run")(page("dag-run-failed")) == f"no state shown for the run {RUN}"

    def test_the_breadcrumb_alone_is_not_a_state(self):
        text = page("dag-run-success")
        heading = text.index(f"\n{RUN}\nSuccess")
        without_heading = text[:heading] + text[heading:].replace("Success", "", 1)
        assert shows_success(RUN, "the run")(without_heading) == f"no state shown for the run {RUN}"


class TestTheTaskLog:
    def test_a_log_with_the_tasks_output_passes(self):
        assert pages(DAG, RUN, TASK, OUTPUT)[2].check(page("task-log-success")) is None

    def test_the_command_line_quoting_the_output_is_not_the_output(self):
        text = "\n".join(line for line in page("task-log-success").splitlines() if not line.endswith(f"- {OUTPUT}"))
        assert OUTPUT in text
        assert shows_output(TASK, OUTPUT)(text) == f"no line of {TASK}'s log ends with {OUTPUT!r}"

    def test_a_failed_task_names_both_its_state_and_the_missing_output(self):
        missing = pages(DAG, FAILED_RUN, TASK, OUTPUT)[2].check(page("task-log-failed"))
        assert missing == f"the task {TASK} is Failed, not Success; no line of {TASK}'s log ends with {OUTPUT!r}"

    def test_the_output_is_what_the_example_dag_prints(self):
        assert f'echo "{OUTPUT}"' in (ROOT / "dags" / "example_etl.py").read_text()


class TestPages:
    def test_the_three_pages_are_the_uis_routes_with_the_run_id_quoted(self):
        got = [(p.name, p.path) for p in pages(DAG, RUN, TASK, OUTPUT)]
        run = "manual__2026-12-07T04%3A26%3A09.857396%2B00%3A00"
        assert got == [
            ("airflow-dag-list", "/dags"),
            ("airflow-dag-run", f"/dags/example_etl/runs/{run}"),
            ("airflow-task-log", f"/dags/example_etl/runs/{run}/tasks/extract"),
        ]

    def test_the_auth_managers_login_form_is_recognised(self):
        assert screenshots.login_page("http://127.0.0.1:8080/auth/login/?next=http%3A%2F%2F127.0.0.1%3A8080%2Fdags")
        assert screenshots.login_page("http://127.0.0.1:8080/login")
        assert not screenshots.login_page("http://127.0.0.1:8080/dags/login_audit/runs/x")


class FakeScreen:
    """A browser that shows the saved pages: `shown` maps a path to its text."""

    def __init__(self, shown: dict[str, str], redirect: str = "") -> None:
        self.shown = shown
        self.redirect = redirect
        self.cookies: list[tuple[str, str, str]] = []
        self.at = ""
        self.visited: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.row = 0  # the log row that MARK_ROW finds

    def set_cookie(self, url: str, name: str, value: str, http_only: bool = True) -> None:
        self.cookies.append((url, name, value))

    def resize(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    def evaluate(self, expression: str) -> object:
        assert "virtualized-item-" in expression and json.dumps(OUTPUT) in expression
        return self.row

    def navigate(self, url: str) -> None:
        self.at = self.redirect or url
        self.visited.append(self.at)

    def text(self) -> str:
        return next((t for p, t in self.shown.items() if self.at.split("#")[0].endswith(p)), "")

    def url(self) -> str:
        return self.at

    def screenshot(self) -> bytes:
        return PNG + self.at.encode()


def saved_pages(run: str, run_page: str, log_page: str) -> dict[str, str]:
    paths = [p.path for p in pages(DAG, run, TASK, OUTPUT)]
    return dict(zip(paths, [page("dag-list"), page(run_page), page(log_page)], strict=True))


class TestTake:
    def test_each_page_is_written_once_it_shows_what_it_must_with_the_token_as_the_cookie(self, tmp_path):
        screen = FakeScreen(saved_pages(RUN, "dag-run-success", "task-log-success"))
        lines: list[str] = []
        written = screenshots.take(
            screen, BASE, "jwt", pages(DAG, RUN, TASK, OUTPUT), tmp_path, timeout=1, settle=0, echo=lines.append
        )
        assert [p.name for p in written] == ["airflow-dag-list.png", "airflow-dag-run.png", "airflow-task-log.png"]
        assert written[1].read_bytes().startswith(PNG)
        assert screen.cookies == [(BASE + "/", "_token", "jwt")]
        assert len(lines) == 3 and lines[0].startswith("the DAG list: shown after")

    def test_pages_are_read_in_a_tall_window_and_shot_at_1280_by_800(self, tmp_path):
        screen = FakeScreen(saved_pages(RUN, "dag-run-success", "task-log-success"))
        screenshots.take(screen, BASE, "jwt", pages(DAG, RUN, TASK, OUTPUT)[:1], tmp_path, 1, 0)
        assert screen.sizes == [(1280, screenshots.READ_HEIGHT), (1280, 800)]

    def test_the_log_line_with_the_output_is_scrolled_to_and_marked_by_its_number(self, tmp_path):
        screen = FakeScreen(saved_pages(RUN, "dag-run-success", "task-log-success"))
        screen.row = 7
        screenshots.take(screen, BASE, "jwt", pages(DAG, RUN, TASK, OUTPUT), tmp_path, 1, 0)
        log = BASE + pages(DAG, RUN, TASK, OUTPUT)[2].path
        assert screen.visited[2:] == [log, log + "#7"]

    def test_a_log_view_without_the_rows_the_mark_looks_for_is_shot_unmarked(self, tmp_path):
        screen = FakeScreen(saved_pages(RUN, "dag-run-success", "task-log-success"))
        screenshots.take(screen, BASE, "jwt", pages(DAG, RUN, TASK, OUTPUT), tmp_path, 1, 0)
        assert not any("#" in url for url in screen.visited)

    def test_a_failed_run_fails_naming_the_state_and_keeps_the_pages_screenshot(self, tmp_path):
        screen = FakeScreen(saved_pages(FAILED_RUN, "dag-run-failed", "task-log-failed"))
        with pytest.raises(ScreenshotError) as err:
            screenshots.take(screen, BASE, "jwt", pages(DAG, FAILED_RUN, TASK, OUTPUT), tmp_path, timeout=1, settle=0)
        message = str(err.value)
        assert message.startswith(f"the run of {DAG} ({BASE}/dags/{DAG}/runs/manual__")
        assert f"the run {FAILED_RUN} is Failed, not Success" in message
        assert "The page showed: " in message and "| Failed |" in message
        assert (tmp_path / "airflow-dag-run.failed.png").exists()
        assert not (tmp_path / "airflow-dag-run.png").exists()

    def test_a_log_without_the_output_fails_naming_the_line_it_looked_for(self, tmp_path):
        shown = saved_pages(RUN, "dag-run-success", "task-log-success")
        log_path = pages(DAG, RUN, TASK, OUTPUT)[2].path
        shown[log_path] = shown[log_path].replace(f"- {OUTPUT}\n", "- \n")
        with pytest.raises(ScreenshotError, match=re.escape(f"no line of {TASK}'s log ends with {OUTPUT!r}")):
            screenshots.take(FakeScreen(shown), BASE, "jwt", pages(DAG, RUN, TASK, OUTPUT), tmp_path, 1, 0)

    def test_a_page_that_is_navigating_meanwhile_is_asked_again(self, tmp_path):
        screen = FakeScreen(saved_pages(RUN, "dag-run-success", "task-log-success"))
        answers = [BrowserError("Runtime.evaluate: Cannot find context with specified id")]
        real_text = screen.text

        def text() -> str:
            if answers:
                raise answers.pop()
            return real_text()

        screen.text = text  # type: ignore[method-assign]
        written = screenshots.take(screen, BASE, "jwt", pages(DAG, RUN, TASK, OUTPUT)[:1], tmp_path, 5, 0)
        assert [p.name for p in written] == ["airflow-dag-list.png"] and not answers

    def test_the_login_page_says_the_cookie_was_not_accepted_at_once(self, tmp_path):
        screen = FakeScreen({}, redirect=f"{BASE}/auth/login/?next=x")
        with pytest.raises(ScreenshotError, match="the login page instead: the _token cookie was not accepted"):
            screenshots.take(screen, BASE, "bad", pages(DAG, RUN, TASK, OUTPUT), tmp_path, timeout=30, settle=0)


class EchoOnly:
    """Where the step says what it did."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def echo(self, line: str) -> None:
        self.lines.append(line)


API = AirflowApi(BASE, token="jwt")


class TestTheNodeScenarioStep:
    """The node scenario's step (`screenshots.of_run`), with the browser part stood in for."""

    def test_the_pngs_are_kept_in_the_runs_folder_and_copied_where_asked(self, tmp_path, monkeypatch):
        def shots(api, dag, run, task, output, out, echo):
            out.mkdir(parents=True)
            assert (dag, run, task, output) == (DAG, RUN, TASK, OUTPUT)
            for name in ("a.png", "b.png"):
                (out / name).write_bytes(PNG)
            return [out / "a.png", out / "b.png"]

        monkeypatch.setattr(screenshots, "screenshot_run", shots)
        d = EchoOnly()
        written = screenshots.of_run(API, RUN, [{"task_id": TASK}], tmp_path / "run", tmp_path / "kept", d.echo)
        assert [p.name for p in written] == ["a.png", "b.png"]
        assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["a.png", "b.png"]
        assert d.lines == [f"screenshots kept in {tmp_path / 'kept'}: a.png, b.png"]

    def test_a_page_that_does_not_show_what_it_must_fails_the_step_with_the_checks_words(self, tmp_path, monkeypatch):
        def shots(*args, **kwargs):
            raise ScreenshotError(f"the run of {DAG} (...): the run x is Failed, not Success")

        monkeypatch.setattr(screenshots, "screenshot_run", shots)
        with pytest.raises(StepError, match=f"^the Airflow UI: the run of {DAG} .*: the run x is Failed, not Success$"):
            screenshots.of_run(API, RUN, [{"task_id": TASK}], tmp_path, None, EchoOnly().echo)

    def test_a_dag_without_the_task_is_named_with_the_tasks_it_has(self, tmp_path):
        with pytest.raises(
            StepError, match=f"^{DAG} has no task {TASK} to show the log of \\(its tasks: load, report\\)$"
        ):
            screenshots.of_run(API, RUN, [{"task_id": "load"}, {"task_id": "report"}], tmp_path, None, EchoOnly().echo)


class TestTheDocsImages:
    @pytest.mark.parametrize("name", [p.name for p in pages(DAG, RUN, TASK, OUTPUT)])
    def test_each_screenshot_is_in_the_docs_small_and_1280_by_800(self, name):
        path = ROOT / "docs" / "images" / f"{name}.png"
        assert path.stat().st_size < 200 * 1024
        assert png_size(path.read_bytes()) == (1280, 800)
        assert f"images/{name}.png" in (ROOT / "docs" / "e2e.md").read_text()


class TestChromiumFlags:
    def test_only_the_named_hosts_resolve_and_nothing_reaches_out(self, tmp_path):
        args = chromium_args(tmp_path, ("127.0.0.1",), root=False)
        assert "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" in args
        assert {"--no-proxy-server", "--disable-background-networking", "--disable-component-update"} <= set(args)
        assert "--no-sandbox" not in args

    def test_root_runs_without_the_sandbox(self, tmp_path):
        assert chromium_args(tmp_path, root=True)[0] == "--no-sandbox"


# --- the real browser -------------------------------------------------------------------------


def chromium_or_skip() -> None:
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.environ.get("AIRFLOW_K8S_E2E") == "required":
        pytest.fail("headless Chromium is missing (Debian: apt-get install chromium; ./run.sh test installs it)")
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


class CookiePage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        cookie = self.headers.get("Cookie", "none")
        body = f"<html><body><h1>hello</h1><p id=c>cookie: {cookie}</p></body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CookiePage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class TestHeadlessChromium:
    def test_it_sends_the_cookie_shows_the_pages_text_and_takes_a_1280_by_800_png(self, served):
        chromium_or_skip()
        with Browser() as browser:
            browser.set_cookie(served + "/", "_token", "abc")
            browser.navigate(served + "/page")
            assert screenshots.lines(browser.text()) == ["hello", "cookie: _token=abc"]
            assert browser.url() == served + "/page"
            assert png_size(browser.screenshot()) == (1280, 800)

    def test_a_host_name_does_not_resolve_so_nothing_leaves_the_machine(self):
        chromium_or_skip()
        with Browser() as browser, pytest.raises(BrowserError, match="ERR_NAME_NOT_RESOLVED"):
            browser.navigate("http://example.com/")

    def test_it_leaves_no_process_and_no_profile_behind(self, served):
        chromium_or_skip()
        browser = Browser()
        with browser:
            proc = browser._proc
            profile = browser._profile
            assert proc is not None and profile is not None and profile.exists()
        assert proc.poll() is not None
        assert not Path(profile).exists()
