"""Importing the code location stays cheap: every run process, code server and sensor imports it,
so Spark, pandas, numpy, pyarrow and SQLAlchemy load only inside the functions that use them
(issue 15). Dagster itself imports none of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sml_assets_tests.conftest import REPO_ROOT

HEAVY = ("pyspark", "dagster_pyspark", "pandas", "numpy", "pyarrow", "sqlalchemy")


def test_importing_the_definitions_imports_no_heavy_library() -> None:
    script = (
        f"import json, sys, sml_assets.definitions; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_every_job_runs_its_steps_in_the_runs_own_process() -> None:
    from dagster import in_process_executor

    from sml_assets.definitions import defs

    assert defs.executor is in_process_executor
    for job in defs.jobs or []:
        assert defs.resolve_job_def(job.name).executor_def is in_process_executor, job.name
    assert defs.resolve_implicit_global_asset_job_def().executor_def is in_process_executor
