"""The chunk writer: chunks committed in order on its thread, each all or nothing; its failures
reach the loop's thread and stop the writing; leaving early rolls back the open chunk."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sml_assets.chunk_writer import ChunkWriter
from sml_assets.resources.database import MetricsDatabase, OffsetAdvance, OffsetConflictError
from sml_assets_tests.conftest import drop_postgres_test_data
from sml_assets_tests.test_database import columns, dead_letter, written


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetricsDatabase]:
    if request.param == "sqlite":
        found = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}", table="server_metrics")
    else:
        unique_name = request.getfixturevalue("unique_name")
        found = MetricsDatabase(url=request.getfixturevalue("postgres_url"), table=unique_name[:40])
    found.ensure_tables()
    yield found
    if request.param == "sqlite":
        found.engine().dispose()
    else:
        drop_postgres_test_data(found, request.getfixturevalue("unique_name"))


@pytest.fixture
def topic(unique_name: str) -> str:
    return f"{unique_name}-metrics"


def commit_offsets_0_and_1(writer: ChunkWriter, topic: str) -> None:
    """Hand over a first chunk: the rows of offsets 0 and 1, the stored offset set to 2."""
    writer.add(columns(topic, 0, 1))
    writer.commit([], [OffsetAdvance(0, None, 2)])


@pytest.mark.integration
def test_chunks_are_committed_in_order_with_their_dead_letters_and_offsets(
    database: MetricsDatabase, topic: str
) -> None:
    with ChunkWriter(database, "c", topic, "t-id") as writer:
        writer.add(columns(topic, 0, 1))
        writer.add(columns(topic, 3))
        writer.commit([dead_letter(2, topic=topic)], [OffsetAdvance(0, None, 4)])
        writer.add(columns(topic, 4, 5))
        writer.commit([], [OffsetAdvance(0, 4, 6)])
        writer.close()
    assert [(chunk.rows, len(chunk.dead_letters)) for chunk in writer.committed()] == [(3, 1), (2, 0)]
    assert written(database, topic) == (5, 1, {0: 6})
    metrics = database.tables.metrics
    with database.transaction() as connection:
        stamps = connection.execute(
            select(metrics.c.kafka_offset, metrics.c.ingested_at, metrics.c.kafka_topic_id)
        ).all()
    first, second = ({at for offset, at, _ in stamps if offset in chunk} for chunk in ({0, 1, 3}, {4, 5}))
    assert len(first) == len(second) == 1, "every row of a chunk carries the time the chunk was opened"
    assert min(first) < min(second)
    assert {topic_id for *_, topic_id in stamps} == {"t-id"}


@pytest.mark.integration
def test_a_failed_chunk_is_raised_in_the_loop_and_nothing_after_it_is_written(
    database: MetricsDatabase, topic: str
) -> None:
    with pytest.raises(OffsetConflictError, match="no longer"), ChunkWriter(database, "c", topic, "t-id") as writer:
        commit_offsets_0_and_1(writer, topic)
        writer.add(columns(topic, 2))
        writer.commit([], [OffsetAdvance(0, 1, 3)])  # the stored offset is 2: a conflict
        writer.add(columns(topic, 3))
        writer.commit([], [OffsetAdvance(0, 3, 4)])
        for offset in range(4, 100):  # the loop goes on until the writer's failure reaches it
            writer.add(columns(topic, offset))
    assert written(database, topic) == (2, 0, {0: 2})


@pytest.mark.integration
def test_leaving_with_an_error_rolls_back_the_open_chunk_and_keeps_the_committed_ones(
    database: MetricsDatabase, topic: str
) -> None:
    with pytest.raises(RuntimeError, match="the broker went away"), ChunkWriter(database, "c", topic, "t-id") as writer:
        commit_offsets_0_and_1(writer, topic)
        writer.add(columns(topic, 2, 3))
        raise RuntimeError("the broker went away")
    assert written(database, topic) == (2, 0, {0: 2})
    assert [chunk.rows for chunk in writer.committed()] == [2]


def test_the_writer_thread_shares_an_in_memory_database_with_the_loop() -> None:
    """`sqlite://` is one database per connection: every thread has to get the same one."""
    in_memory = MetricsDatabase(url="sqlite://")
    in_memory.ensure_tables()
    with ChunkWriter(in_memory, "c", "metrics", "t-id") as writer:
        writer.add(columns("metrics", 0))
        writer.commit([], [OffsetAdvance(0, None, 1)])
        writer.close()
    assert written(in_memory, "metrics") == (1, 0, {0: 1})
    in_memory.engine().dispose()


def test_the_writer_writes_on_a_thread_of_its_own(tmp_path: Path) -> None:
    database = MetricsDatabase(url=f"sqlite:///{tmp_path / 'sml.db'}")
    database.ensure_tables()
    threads: list[str] = []
    original = MetricsDatabase.chunk_transaction

    def recorded(self: MetricsDatabase, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MetricsDatabase, "chunk_transaction", recorded)
        with ChunkWriter(database, "c", "metrics", "t-id") as writer:
            writer.add(columns("metrics", 0))
            writer.commit([], [OffsetAdvance(0, None, 1)])
            writer.close()
    assert threads == ["sml-writer-metrics"]
    assert written(database, "metrics") == (1, 0, {0: 1})
    database.engine().dispose()
