"""Spark's Python workers failing to start or to import what log_summary needs, as one line naming PYSPARK_PYTHON.

Every log_summary run with new lines parses them in Spark's Python workers (`sml_assets.log_batches`,
`mapInArrow`), and over Spark Connect the foreachBatch merge runs in one too. Spark starts them with
the interpreter `PYSPARK_PYTHON` names (of the run's process for `local[2]`, of the executors on a
cluster, of the server over Connect); one that does not exist, crashes, or lacks pyarrow or the sml
package ends the query with a Java stack trace or a worker traceback that names neither the setting
nor the fix.
"""

from __future__ import annotations

import os
import re

from sml_assets.resources.spark import MASTER_VARIABLE, REMOTE_VARIABLE

WORKER_FAILURES = (
    "Python worker failed to connect back",
    "Timed out while waiting for the Python worker to connect back",
    "Python daemon failed to launch worker",
    "Python failed to launch worker",
    "reading the port number from pyspark.daemon's stdout",
    "PYTHON_VERSION_MISMATCH",
    "PACKAGE_NOT_INSTALLED",
)
"""What Spark says when a Python worker does not start (PythonWorkerFactory) or lacks a package
pyspark needs (pyspark's error conditions)."""
MISSING_PROGRAM = re.compile(r'Cannot run program "([^"]+)"')
MISSING_MODULE = re.compile(r"No module named '([^']+)'")


class PythonWorkerError(RuntimeError):
    """Spark's Python workers could not start, or could not import what log_summary needs."""


def worker_failure(text: str) -> str | None:
    """The part of a Spark error that says a Python worker failed, or None when it says something else."""
    program = MISSING_PROGRAM.search(text)
    if program and ("python" in os.path.basename(program.group(1)).lower() or "PythonWorkerFactory" in text):
        return f'Spark cannot run program "{program.group(1)}"'
    module = MISSING_MODULE.search(text)
    if module:
        return f"a Python worker has no module named {module.group(1)!r}"
    return next((f"Spark says: {marker}" for marker in WORKER_FAILURES if marker in text), None)


def translate_worker_error(
    error: BaseException, master: str, remote: str | None, python: str | None
) -> PythonWorkerError | None:
    """A failed Python worker as one line naming PYSPARK_PYTHON, whose it is, and what it must have.

    `python` is the interpreter the run's own SparkContext starts workers with (pyspark reads
    PYSPARK_PYTHON when the context starts); None over Connect, where only the server knows it.
    The run's own modules are all imported before its query starts, so a missing module inside a
    Spark error is one of a worker."""
    failure = worker_failure(str(error))
    if failure is None:
        return None
    if remote:
        whose = (
            f"PYSPARK_PYTHON of the Spark Connect server at {REMOTE_VARIABLE}={remote} (set in the server's "
            "environment, not the run's; devstack starts it with the repository's .venv)"
        )
        then = "restart the server"
    elif master.startswith("local"):
        whose = f"PYSPARK_PYTHON={python} of the run's process (Spark runs {master} in it)"
        then = "run log_summary again"
    else:
        whose = (
            f"PYSPARK_PYTHON={python} of the run's process, a path that the executors of "
            f"{MASTER_VARIABLE}={master} run on their machines"
        )
        then = "run log_summary again"
    return PythonWorkerError(
        f"Spark's Python workers failed in log_summary's query ({failure}): they run the log parse "
        f"(and over Spark Connect the merge) with the interpreter named by {whose}, which must exist, be "
        "the Python version of the run's pyspark, and import pyarrow, pandas and the sml package (sml_assets: "
        f"install the project there or put the checkout on its PYTHONPATH). Point it at such an interpreter "
        f"(the project's .venv/bin/python), then {then}."
    )
