"""The foreachBatch side of `log_summary`: each batch merged into the stored summary, which is
written before Spark commits the batch.

Over Spark Connect this runs in a Python worker the server starts for every query, which unpickles
the batch function and so imports the modules it names: this one and `sml_assets.logs_stream` import
neither Dagster nor the resources (`test_summarize.py` unpickles it as the worker does), because
every module imported there is paid again by every run (about 1.3 CPU-s for Dagster alone).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sml_assets.windows import BatchUpdate, MergeResult, Summary, merge_increments, to_json


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target, fsync, then rename over it: readers see the old or the new file.

    mkstemp creates the file 0600; the summary is for other readers too, so it becomes 0644."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class SummaryMerger:
    """The foreachBatch side: merge each batch and persist the summary before Spark commits it,
    so a crash replays the batch and the batch-id check skips what was already stored.

    Over Spark Connect it is called in the server's Python worker (one per query, so the summary
    carries from batch to batch there); `adopt` then brings its answers back to the run."""

    path: Path
    summary: Summary
    results: list[MergeResult] = field(default_factory=list)

    def __call__(self, batch: BatchUpdate) -> MergeResult:
        result = merge_increments(self.summary, batch)
        if not result.replayed:
            write_atomically(self.path, to_json(result.summary))
        self.summary = result.summary
        self.results.append(result)
        return result

    def adopt(self, answers: tuple[object, ...]) -> None:
        """Take the run's merge results as the query returned them (the same ones, in process)."""
        results = [answer for answer in answers if isinstance(answer, MergeResult)]
        if results:
            self.results = results
            self.summary = results[-1].summary
