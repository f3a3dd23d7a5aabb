"""checkov's Kubernetes scan, run in checkov's own virtualenv (this file imports nothing of the project).

Started at the beginning of a preview, it imports checkov (most of checkov's run time) while
the preview runs the program and renders the charts, then reads one request line on stdin:

    {"files": [...], "baseline": "<checkov baseline file>", "output": "<report path>"}

and scans the files with checkov's Kubernetes runner and every one of its Kubernetes checks.
Findings the baseline lists are moved to skipped with checkov's own Baseline class (as
`checkov --baseline FILE --output-baseline-as-skipped` does); passed checks are counted
before that (the CLI keeps only those the baseline names). The report written is compact:
the summary, failed and skipped findings, no passed checks and no code blocks.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("BC_SKIP_MAPPING", "TRUE")
os.environ.setdefault("CKV_SKIP_PACKAGE_UPDATE_CHECK", "true")
os.environ.setdefault("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")

from checkov.common.output.baseline import Baseline
from checkov.kubernetes.runner import Runner
from checkov.runner_filter import RunnerFilter


def _record(check: Any) -> dict[str, Any]:
    out = {
        "check_id": check.check_id,
        "check_name": check.check_name,
        "resource": check.resource,
        "file_path": check.file_path,
        "guideline": check.guideline,
    }
    comment = (check.check_result or {}).get("suppress_comment")
    if comment:
        out["suppress_comment"] = comment
    return out


def main() -> int:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # the preview reused an earlier scan
    request = json.loads(line)
    report = Runner().run(
        root_folder=None,
        files=request["files"],
        runner_filter=RunnerFilter(framework=["kubernetes"], download_external_modules=False),
    )
    passed = len(report.passed_checks)
    if request.get("baseline"):
        baseline = Baseline(output_skipped=True)
        baseline.from_json(request["baseline"])
        baseline.compare_and_reduce_reports([report])
    import checkov.version

    compact = {
        "check_type": "kubernetes",
        "checkov_version": checkov.version.version,
        "summary": {
            "passed": passed,
            "failed": len(report.failed_checks),
            "skipped": len(report.skipped_checks),
            "resource_count": (report.resources and len(report.resources)) or 0,
        },
        "results": {
            "failed_checks": [_record(c) for c in report.failed_checks],
            "skipped_checks": [_record(c) for c in report.skipped_checks],
        },
    }
    with open(request["output"], "w") as handle:
        json.dump(compact, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
