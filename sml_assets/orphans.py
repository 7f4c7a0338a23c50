"""Stop the queries that killed log_summary runs left running in a Spark Connect server.

A Connect session outlives its client: when a run is SIGKILLed, its streaming query goes on in the
server and would merge its batch while the next run works. A session's queries are visible only
from that session (`spark.streams.active` of a new one is empty), so the next run reattaches to
each dead run's session by the id its lease recorded (`sml_assets.run_lease`), stops the query,
waits until it has ended, and releases the session. Stopping also ends the batch function in the
server's Python worker: nothing of the stopped batch is merged afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sml_assets.logs_stream import QUERY_PREFIX
from sml_assets.resources.spark import REMOTE_VARIABLE
from sml_assets.run_lease import DeadRun

STOP_DEADLINE_S = 60.0


class OrphanQueryError(RuntimeError):
    """A killed run's query did not end within the deadline."""


def session_url(url: str, session_id: str) -> str:
    """`url` with `session_id` among its parameters (`sc://host:port/;param=value;session_id=...`)."""
    base = url if ";" in url else url.rstrip("/") + "/"
    return f"{base};session_id={session_id}"


def stop_orphans(url: str, runs: Iterable[DeadRun], deadline_s: float = STOP_DEADLINE_S) -> list[str]:
    """Stop the log_summary queries still active in the sessions of `runs`; their names, as stopped."""
    from pyspark.sql import SparkSession

    stopped: list[str] = []
    for run in runs:
        if run.session_id is None:
            continue
        session = SparkSession.builder.remote(session_url(url, run.session_id)).create()
        try:
            for query in session.streams.active:
                if not (query.name or "").startswith(QUERY_PREFIX):
                    continue
                query.stop()
                ends = time.monotonic() + deadline_s
                while query.isActive:
                    if time.monotonic() >= ends:
                        raise OrphanQueryError(
                            f"{REMOTE_VARIABLE}={url}: the query {query.name} (id {query.id}) of a killed "
                            f"log_summary run (session {run.session_id}) did not stop within {deadline_s:g} s: "
                            "look at the Spark Connect server's log for what it is doing, or restart the "
                            "server, then run log_summary again"
                        )
                    time.sleep(0.2)
                stopped.append(str(query.name))
        except OrphanQueryError:
            raise
        except Exception as error:
            if "SESSION_CLOSED" not in str(error):
                raise
        finally:
            session.stop()
    return stopped
