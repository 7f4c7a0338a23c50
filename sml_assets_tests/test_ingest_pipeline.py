"""The drain commits chunk N on a writer thread while it parses chunk N+1: commits stay in order and
exactly once. A failing commit fails the run with its own error and nothing after it is committed; an
interrupt of the run while a chunk is being committed leaves that chunk whole and no writer running.
Both faults are real SQLite behaviour (a trigger), on a real topic."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from sml_assets.ingest import ingest_metrics
from sml_assets.resources.database import MetricsDatabase, OffsetConflictError
from sml_assets.resources.kafka import KafkaResource
from sml_assets_tests.helpers import CONSUMER, assert_offsets_cover_exactly_what_is_stored, good, produce

pytestmark = pytest.mark.integration

MESSAGES = 40
CHUNK = 5
LOG = logging.getLogger("test_ingest_pipeline")


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[MetricsDatabase]:
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}")
    yield database
    database.engine().dispose()


@pytest.fixture
def topic(new_topic: Callable[..., str], kafka_bootstrap: str) -> str:
    """A topic of its own holding MESSAGES valid metrics messages: chunks of CHUNK at offsets 0, 5, 10..."""
    name = new_topic()
    produce(kafka_bootstrap, name, [good(n) for n in range(MESSAGES)])
    return name


def _trigger(database: MetricsDatabase, offset: int, action: str) -> None:
    """A trigger that runs `action` when the row of `offset` is inserted, inside that chunk's commit."""
    table = database.tables.metrics.name
    with database.transaction() as connection:
        connection.exec_driver_sql(
            f"CREATE TRIGGER at_offset_{offset} AFTER INSERT ON {table} "
            f"WHEN NEW.kafka_offset = {offset} BEGIN SELECT {action}; END"
        )


def _ingest(kafka: KafkaResource, database: MetricsDatabase) -> int:
    return ingest_metrics(kafka, database, LOG, consumer_name=CONSUMER, chunk_size=CHUNK).rows


def _three_chunks_stored_then_a_rerun_reads_the_rest(
    database: MetricsDatabase, kafka: KafkaResource, topic: str, trigger_offset: int
) -> None:
    """After the fault: no writer thread, chunks 1-3 stored with their offsets and nothing after
    them; without the trigger, a rerun stores the rest exactly once."""
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("sml-commit")]
    assert database.stored_offsets(CONSUMER, topic) == {0: 3 * CHUNK}
    assert assert_offsets_cover_exactly_what_is_stored(database, topic, CONSUMER) == 3 * CHUNK
    with database.transaction() as connection:
        connection.exec_driver_sql(f"DROP TRIGGER at_offset_{trigger_offset}")
    assert _ingest(kafka, database) == MESSAGES - 3 * CHUNK
    assert assert_offsets_cover_exactly_what_is_stored(database, topic, CONSUMER) == MESSAGES


def test_a_failing_commit_fails_the_run_with_its_error_and_nothing_after_it_is_committed(
    sqlite_database: MetricsDatabase, topic: str, kafka_for: Callable[[str], KafkaResource]
) -> None:
    """Chunk 4 (offsets 15-19) is refused while chunk 5 is being parsed: the run raises chunk 4's error."""
    sqlite_database.ensure_tables()
    _trigger(sqlite_database, 17, "RAISE(ABORT, 'offset 17 refused by the test')")
    with pytest.raises(OffsetConflictError, match="offset 17 refused by the test"):
        _ingest(kafka_for(topic), sqlite_database)
    _three_chunks_stored_then_a_rerun_reads_the_rest(sqlite_database, kafka_for(topic), topic, 17)


def test_an_interrupt_while_a_chunk_is_committed_leaves_it_whole_and_no_writer_running(
    sqlite_database: MetricsDatabase, topic: str, kafka_for: Callable[[str], KafkaResource]
) -> None:
    """SIGINT (a SIGTERM of a Dagster run alike: both raise in the main thread) sent from inside chunk
    3's INSERT (offsets 10-14): the run raises it only after that commit has ended, whole; chunk 4
    never starts."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "SIGINT must raise KeyboardInterrupt"
    main = threading.main_thread().ident
    assert main is not None
    interrupted_from: list[str] = []

    def interrupt_run() -> int:
        interrupted_from.append(threading.current_thread().name)
        signal.pthread_kill(main, signal.SIGINT)
        return 0

    def register(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("interrupt_run", 0, interrupt_run)

    event.listen(sqlite_database.engine(), "connect", register)
    sqlite_database.ensure_tables()
    _trigger(sqlite_database, 12, "interrupt_run()")
    with pytest.raises(KeyboardInterrupt):
        _ingest(kafka_for(topic), sqlite_database)
    assert interrupted_from and interrupted_from[0].startswith("sml-commit"), interrupted_from
    _three_chunks_stored_then_a_rerun_reads_the_rest(sqlite_database, kafka_for(topic), topic, 12)
