"""windows.py: merging Spark's window updates, deciding `final`, rendering the CSV (no services)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sml_assets.windows import (
    CATEGORIES,
    CSV_COLUMNS,
    WATERMARK_DELAY,
    WINDOW,
    BatchUpdate,
    Counts,
    StreamState,
    Summary,
    WindowUpdate,
    from_json,
    merge_batch,
    merge_increments,
    newly_final,
    render_csv,
    rows,
    to_json,
)

T0 = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


def update(minute: int, get_ok: int = 1, max_second: int = 0, **counts: int) -> WindowUpdate:
    start = T0 + timedelta(minutes=minute)
    return WindowUpdate(
        start=start,
        counts=Counts(GET_success=get_ok, **counts),
        max_event_time=start + timedelta(seconds=max_second),
    )


def batch(batch_id: int, *windows: WindowUpdate, query: str = "q1") -> BatchUpdate:
    return BatchUpdate(query_id=query, batch_id=batch_id, windows=windows)


def merged(*batches: BatchUpdate, start: Summary | None = None) -> Summary:
    summary = start or Summary()
    for item in batches:
        summary = merge_batch(summary, item).summary
    return summary


def test_first_batch_stores_counts_query_and_batch_id() -> None:
    summary = merged(batch(0, update(0, get_ok=3, POST_failure=2)))
    assert summary.windows == {T0: Counts(GET_success=3, POST_failure=2)}
    assert (summary.query_id, summary.last_batch_id) == ("q1", 0)


def test_replayed_batch_is_skipped() -> None:
    once = merged(batch(0, update(0, get_ok=3)))
    result = merge_batch(once, batch(0, update(0, get_ok=3)))
    assert result.replayed and result.summary == once and result.counted == 0


def test_older_batch_of_same_query_is_skipped_even_with_other_counts() -> None:
    summary = merged(batch(0, update(0, get_ok=3)), batch(1, update(0, get_ok=5)))
    assert merge_batch(summary, batch(0, update(0, get_ok=9))).summary == summary


def test_update_replaces_with_absolute_counts_not_sums() -> None:
    summary = merged(batch(0, update(0, get_ok=3)), batch(1, update(0, get_ok=5)))
    assert summary.windows[T0].GET_success == 5


def test_counted_is_the_increase_of_totals() -> None:
    first = merge_batch(Summary(), batch(0, update(0, get_ok=3), update(5, get_ok=1)))
    second = merge_batch(first.summary, batch(1, update(0, get_ok=5), update(10, get_ok=2)))
    assert (first.counted, second.counted) == (4, 4)


def test_window_without_watermark_passed_is_provisional() -> None:
    summary = merged(batch(0, update(0, max_second=299)))
    assert rows(summary)[0].final is False


def test_window_is_final_exactly_when_watermark_reaches_its_end() -> None:
    just_before = merged(batch(0, update(0), update(10, max_second=299)))
    assert just_before.watermark == T0 + timedelta(minutes=5, seconds=-1)
    assert rows(just_before)[0].final is False
    reached = merged(batch(1, update(15)), start=just_before)
    assert reached.watermark == T0 + WINDOW
    assert [row.final for row in rows(reached)] == [True, False, False]


def test_final_window_never_changes() -> None:
    summary = merged(batch(0, update(0, get_ok=2), update(20)))
    result = merge_batch(summary, batch(1, update(0, get_ok=7)))
    assert result.summary.windows[T0].GET_success == 2
    assert result.ignored == (T0,) and result.updated == ()


def test_late_only_window_beyond_watermark_is_not_created() -> None:
    summary = merged(batch(0, update(30)))
    after = merged(batch(1, update(0, get_ok=4)), start=summary)
    assert T0 not in after.windows


def test_new_query_restarts_batch_ids_and_never_lowers_counts() -> None:
    summary = merged(batch(0, update(0, get_ok=5)), batch(1, update(5, get_ok=2)))
    rebuilt = merged(batch(0, update(0, get_ok=4, POST_success=1), query="q2"), start=summary)
    assert rebuilt.windows[T0] == Counts(GET_success=5, POST_success=1)
    assert (rebuilt.query_id, rebuilt.last_batch_id) == ("q2", 0)


def test_empty_batch_moves_batch_id_only() -> None:
    summary = merged(batch(0, update(0)))
    after = merged(batch(1), start=summary)
    assert after.windows == summary.windows and after.last_batch_id == 1
    assert after.max_event_time == summary.max_event_time


def test_newly_final_lists_windows_that_turned_final() -> None:
    before = merged(batch(0, update(0), update(5)))
    after = merged(batch(1, update(15, max_second=1)), start=before)
    assert newly_final(before, after) == (T0,)
    assert newly_final(after, after) == ()


@pytest.mark.parametrize(
    "start",
    [T0 + timedelta(minutes=1), T0 + timedelta(seconds=1), datetime(2026, 11, 25, 16, 0)],
    ids=["minute-off", "second-off", "naive"],
)
def test_misaligned_or_naive_window_start_is_refused(start: datetime) -> None:
    with pytest.raises(ValueError):
        WindowUpdate(start=start, counts=Counts(), max_event_time=T0 + timedelta(minutes=1))


def test_max_event_time_outside_its_window_is_refused() -> None:
    with pytest.raises(ValueError, match="outside window"):
        WindowUpdate(start=T0, counts=Counts(), max_event_time=T0 + WINDOW)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Counts(POST_failure=-1)


def test_csv_has_contract_columns_iso_utc_and_lowercase_final() -> None:
    summary = merged(batch(0, update(0, get_ok=2, GET_failure=1), update(15, max_second=1)))
    lines = render_csv(rows(summary)).splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert lines[1] == "2026-11-25T16:00:00Z,2026-11-25T16:05:00Z,2,1,0,0,3,true"
    assert lines[2] == "2026-11-25T16:15:00Z,2026-11-25T16:20:00Z,1,0,0,0,1,false"


def test_empty_summary_renders_header_only() -> None:
    assert render_csv(rows(Summary())) == ",".join(CSV_COLUMNS) + "\n"


def test_state_round_trips_through_json() -> None:
    summary = merged(batch(3, update(0, get_ok=2, POST_failure=4, max_second=17), update(25)))
    assert from_json(to_json(summary)) == summary
    assert from_json(to_json(Summary())) == Summary()


def test_unknown_state_version_is_an_error() -> None:
    with pytest.raises(ValueError, match="version"):
        from_json('{"version": 99}')


# --- properties -------------------------------------------------------------------------------

events_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=90 * 60),  # seconds after T0
        st.sampled_from(CATEGORIES),
        st.integers(min_value=0, max_value=3),  # which run delivers it
    ),
    max_size=60,
)


def spark_model(events: list[tuple[int, str, int]]) -> tuple[list[BatchUpdate], Counter[tuple[datetime, str]], int]:
    """A plain model of Spark's update mode: one batch per run, late rows dropped by window end
    against the watermark of earlier batches, absolute counts of the windows touched."""
    state: Counter[tuple[datetime, str]] = Counter()
    newest: dict[datetime, datetime] = {}
    max_seen: datetime | None = None
    batches: list[BatchUpdate] = []
    late = 0
    for run in range(4):
        watermark = None if max_seen is None else max_seen - WATERMARK_DELAY
        touched: set[datetime] = set()
        for seconds, category, arrives in events:
            if arrives != run:
                continue
            moment = T0 + timedelta(seconds=seconds)
            start = T0 + WINDOW * ((moment - T0) // WINDOW)
            if watermark is not None and start + WINDOW <= watermark:
                late += 1
                continue
            state[(start, category)] += 1
            newest[start] = max(newest.get(start, moment), moment)
            touched.add(start)
        for seconds, _, arrives in events:
            if arrives == run:
                moment = T0 + timedelta(seconds=seconds)
                max_seen = moment if max_seen is None else max(max_seen, moment)
        batches.append(
            batch(
                run,
                *(
                    WindowUpdate(start, Counts(*(state[(start, name)] for name in CATEGORIES)), newest[start])
                    for start in sorted(touched)
                ),
            )
        )
    return batches, state, late


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_merged_batches_equal_a_direct_recount(events: list[tuple[int, str, int]]) -> None:
    batches, truth, late = spark_model(events)
    results = []
    summary = Summary()
    for item in batches:
        result = merge_batch(summary, item)
        results.append(result)
        summary = result.summary
    expected = {
        start: Counts(*(truth[(start, name)] for name in CATEGORIES)) for start in {start for start, _ in truth}
    }
    assert summary.windows == {start: counts for start, counts in expected.items() if counts.total}
    assert sum(result.counted for result in results) == len(events) - late


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.data())
def test_replaying_any_batch_changes_nothing(events: list[tuple[int, str, int]], data: st.DataObject) -> None:
    batches, _, _ = spark_model(events)
    clean = merged(*batches)
    replays: list[BatchUpdate] = []
    for index, item in enumerate(batches):
        replays.append(item)
        replays.extend(data.draw(st.lists(st.sampled_from(batches[: index + 1]), max_size=2)))
    assert merged(*replays) == clean


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_counts_never_decrease_and_final_windows_never_change(events: list[tuple[int, str, int]]) -> None:
    batches, _, _ = spark_model(events)
    summary = Summary()
    for item in batches:
        after = merge_batch(summary, item).summary
        for start, counts in summary.windows.items():
            assert all(a >= b for a, b in zip(after.windows[start].as_tuple(), counts.as_tuple()))
            if summary.is_final(start):
                assert after.windows[start] == counts and after.is_final(start)
        summary = after


@settings(max_examples=100, deadline=None)
@given(events_strategy)
def test_csv_rows_are_sorted_unique_aligned_and_add_up(events: list[tuple[int, str, int]]) -> None:
    batches, _, _ = spark_model(events)
    table = list(csv.DictReader(io.StringIO(render_csv(rows(merged(*batches))))))
    starts = [row["window_start"] for row in table]
    assert starts == sorted(set(starts))
    for row in table:
        start = datetime.fromisoformat(row["window_start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(row["window_end"].replace("Z", "+00:00"))
        assert end - start == WINDOW and start.minute % 5 == 0 and start.second == 0
        assert int(row["total"]) == sum(int(row[name]) for name in CATEGORIES)
        assert row["final"] in {"true", "false"}


@settings(max_examples=100, deadline=None)
@given(events_strategy)
def test_state_json_round_trip_after_any_merge(events: list[tuple[int, str, int]]) -> None:
    batches, _, _ = spark_model(events)
    summary = merged(*batches)
    assert from_json(to_json(summary)) == summary


def increment_batches(events: list[tuple[int, str, int]], query: str = "q1") -> list[BatchUpdate]:
    """What one stateless Spark query's batches bring: each run's own events per window."""
    batches = []
    for run in range(4):
        counts: Counter[tuple[datetime, str]] = Counter()
        newest: dict[datetime, datetime] = {}
        for seconds, category, arrives in events:
            if arrives == run:
                moment = T0 + timedelta(seconds=seconds)
                start = T0 + WINDOW * ((moment - T0) // WINDOW)
                counts[(start, category)] += 1
                newest[start] = max(newest.get(start, moment), moment)
        batches.append(
            batch(
                run,
                *(
                    WindowUpdate(start, Counts(*(counts[(start, name)] for name in CATEGORIES)), newest[start])
                    for start in sorted(newest)
                ),
                query=query,
            )
        )
    return batches


def merged_increments(*batches: BatchUpdate, start: Summary | None = None) -> Summary:
    summary = start or Summary()
    for item in batches:
        summary = merge_increments(summary, item).summary
    return summary


@settings(max_examples=200, deadline=None)
@given(events_strategy)
def test_increments_give_the_csv_and_late_count_of_sparks_stateful_aggregation(
    events: list[tuple[int, str, int]],
) -> None:
    spark_batches, _, late = spark_model(events)
    expected = merged(*spark_batches)
    summary, dropped = Summary(), 0
    for item in increment_batches(events):
        result = merge_increments(summary, item)
        summary, dropped = result.summary, dropped + result.late
    assert render_csv(rows(summary)) == render_csv(rows(expected))
    assert (summary.windows, summary.max_event_time) == (expected.windows, expected.max_event_time)
    assert dropped == late


@settings(max_examples=200, deadline=None)
@given(events_strategy, st.data())
def test_replaying_any_increment_batch_changes_nothing(events: list[tuple[int, str, int]], data: st.DataObject) -> None:
    batches = increment_batches(events)
    clean = merged_increments(*batches)
    replays: list[BatchUpdate] = []
    for index, item in enumerate(batches):
        replays.append(item)
        replays.extend(data.draw(st.lists(st.sampled_from(batches[: index + 1]), max_size=2)))
    assert merged_increments(*replays) == clean


@settings(max_examples=100, deadline=None)
@given(events_strategy)
def test_a_fresh_query_replaying_everything_counts_nothing_twice(events: list[tuple[int, str, int]]) -> None:
    """A lost checkpoint: a new query id re-reads the topic from the start with an empty state."""
    batches = increment_batches(events)
    before = merged_increments(*batches)
    everything = [(seconds, category, 0) for seconds, category, _ in events]
    after = merged_increments(*increment_batches(everything, query="q2"), start=before)
    for start, counts in before.windows.items():
        assert all(a >= b for a, b in zip(after.windows[start].as_tuple(), counts.as_tuple()))
        if before.is_final(start):
            assert after.windows[start] == counts
    truth = Counter(T0 + WINDOW * (timedelta(seconds=seconds) // WINDOW) for seconds, _, _ in events)
    assert all(after.windows[start].total <= truth[start] for start in after.windows)


def test_stream_state_round_trips_and_evicts_windows_the_watermark_passed() -> None:
    summary = merged_increments(
        batch(0, update(0, get_ok=2)), batch(1, update(5, max_second=10)), batch(2, update(30, get_ok=1))
    )
    assert summary.stream.max_event_time == T0 + timedelta(minutes=30)
    assert set(summary.stream.windows) == {T0 + timedelta(minutes=30)}
    assert from_json(to_json(summary)) == summary
    assert from_json(to_json(summary)).stream == summary.stream != StreamState()
