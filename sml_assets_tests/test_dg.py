"""sml as a `dg` project: `dg check defs` and `dg list defs` load it, and loading the definitions
raises no deprecation, supersession, beta or preview warning from sml's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.helpers import dagster_home, run_side_by_side

BIN = Path(sys.executable).parent
CHECKED_CATEGORIES = ("DeprecationWarning", "SupersessionWarning", "BetaWarning", "PreviewWarning", "FutureWarning")

RECORD_WARNINGS = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import sml_assets.definitions as module
    module.defs.resolve_asset_graph()
    module.defs.resolve_all_job_defs()
print(json.dumps([
    {"category": w.category.__name__, "mro": [c.__name__ for c in w.category.__mro__],
     "file": w.filename, "message": str(w.message)}
    for w in caught
]))
"""


def project_env(tmp_path: Path) -> dict[str, str]:
    """This checkout's code, an instance of its own (the repo's dagster.yaml), the stack's data dir."""
    home = dagster_home(tmp_path / "dagster-home")
    return {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def test_loading_the_definitions_raises_no_deprecation_beta_or_supersession_warning_of_ours(tmp_path: Path) -> None:
    result = run([sys.executable, "-c", RECORD_WARNINGS], project_env(tmp_path))
    caught = json.loads(result.stdout.strip().splitlines()[-1])
    ours = [
        w
        for w in caught
        if Path(w["file"]).resolve().is_relative_to(REPO_ROOT)
        or any(name in CHECKED_CATEGORIES for name in w["mro"])
        and "site-packages" not in w["file"]
    ]
    assert ours == [], ours
    dagster_lifecycle = [w for w in caught if {"BetaWarning", "SupersessionWarning", "PreviewWarning"} & set(w["mro"])]
    assert dagster_lifecycle == [], f"a Dagster beta/preview/superseded API is used: {dagster_lifecycle}"


def test_dg_check_defs_and_dg_list_defs_load_the_project(tmp_path: Path) -> None:
    checked, listing = run_side_by_side(
        [[str(BIN / "dg"), "check", "defs"], [str(BIN / "dg"), "list", "defs", "--json"]], project_env(tmp_path)
    )
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    listed = json.loads(listing.stdout)
    assert {asset["asset_key"] for asset in listed["assets"]} == {
        "kafka/metrics_topic",
        "kafka/logs_topic",
        "server_metrics",
        "log_summary",
        "hdfs_log_summary",
    }
    assert {job["name"] for job in listed["jobs"]} == {"ingest_metrics_job", "summarize_logs_job"}
    assert {schedule["name"] for schedule in listed["schedules"]} == {
        "ingest_metrics_every_2_minutes",
        "summarize_logs_every_5_minutes",
    }
    assert {"fleet_health", "no_duplicate_messages"} <= {check["name"] for check in listed["asset_checks"]}
