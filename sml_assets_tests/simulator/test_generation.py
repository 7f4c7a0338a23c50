"""The generator, without Kafka: formats, reproducibility and fault rates."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.generator import SimulationOptions, generate
from simulator.records import Malformation, Stream
from sml_assets_tests.simulator.grammar import LogLine, Metrics, parse_log_line, parse_metrics

START_MS = 1_795_622_400_000  # 2026-11-25T16:00:00Z


def options(**overrides: object) -> SimulationOptions:
    return replace(SimulationOptions(start_ms=START_MS, seed=42, count=2_000), **overrides)


def parse(stream: Stream, value: bytes) -> Metrics | LogLine | str:
    return parse_metrics(value) if stream is Stream.METRICS else parse_log_line(value)


def test_clean_traffic_matches_the_documented_grammar() -> None:
    messages = list(generate(options(servers=7, count=5_000)))
    assert {m.stream for m in messages} == {Stream.METRICS, Stream.LOGS}
    for message in messages:
        parsed = parse(message.stream, message.value)
        if message.stream is Stream.METRICS:
            assert isinstance(parsed, Metrics), message.value
            assert message.key == str(parsed.server_id).encode()
            assert 1 <= parsed.server_id <= 7
            assert parsed.ts_ms == message.event_ms
        else:
            assert isinstance(parsed, LogLine), message.value
            assert parsed.method in ("GET", "POST")
            assert parsed.ip == f"10.0.0.{message.server_id}"
            assert int(parsed.time.timestamp() * 1000) == message.event_ms


def test_example_lines_have_the_seed_shape() -> None:
    metrics = next(m for m in generate(options()) if m.stream is Stream.METRICS).value.decode()
    line = next(m for m in generate(options()) if m.stream is Stream.LOGS).value.decode()
    assert metrics.startswith("id: ") and ", cpu: " in metrics
    assert metrics.split(", ")[-1].startswith("ts: ")
    assert " - user" in line and " GMT] " in line


def test_metrics_drift_slowly_per_server() -> None:
    readings: dict[int, list[Metrics]] = {}
    for message in generate(options(count=3_000, log_rate=0.0)):
        parsed = parse_metrics(message.value)
        assert isinstance(parsed, Metrics)
        readings.setdefault(parsed.server_id, []).append(parsed)
    for series in readings.values():
        steps = [abs(b.cpu - a.cpu) for a, b in zip(series, series[1:])]
        assert max(steps) < 25 and sum(steps) / len(steps) < 5
        assert all(b.ts_ms - a.ts_ms == 5_000 for a, b in zip(series, series[1:]))


def test_same_seed_gives_identical_messages() -> None:
    faulty = options(malformed_rate=0.1, late_rate=0.1, out_of_order_rate=0.1)
    first = [(m.stream, m.key, m.value) for m in generate(faulty)]
    second = [(m.stream, m.key, m.value) for m in generate(faulty)]
    assert first == second


def test_different_seed_gives_different_messages() -> None:
    first = [m.value for m in generate(options(seed=1))]
    second = [m.value for m in generate(options(seed=2))]
    assert first != second


def test_duration_bounds_event_time_and_count_bounds_messages() -> None:
    timed = list(generate(options(count=None, duration_s=60, log_rate=10)))
    assert all(START_MS <= m.clock_ms < START_MS + 60_000 for m in timed)
    assert 400 < len(timed) < 900
    assert len(list(generate(options(count=123)))) == 123


@given(
    seed=st.integers(0, 2**32 - 1),
    malformed_rate=st.floats(0, 1),
    late_rate=st.floats(0, 1),
    max_lateness_s=st.floats(1, 3_600),
    out_of_order_rate=st.floats(0, 1),
    servers=st.integers(1, 300),
)
@settings(max_examples=60, deadline=None)
def test_every_message_is_valid_or_malformed_as_reported(
    seed: int,
    malformed_rate: float,
    late_rate: float,
    max_lateness_s: float,
    out_of_order_rate: float,
    servers: int,
) -> None:
    generated = generate(
        options(
            seed=seed,
            count=300,
            malformed_rate=malformed_rate,
            late_rate=late_rate,
            max_lateness_s=max_lateness_s,
            out_of_order_rate=out_of_order_rate,
            servers=servers,
            metrics_interval_s=1.0,
        )
    )
    for message in generated:
        parsed = parse(message.stream, message.value)
        if message.malformed is None:
            assert not isinstance(parsed, str), (parsed, message.value)
            assert 0 <= message.clock_ms - message.event_ms <= max_lateness_s * 1000 + 1000
        else:
            assert parsed == message.malformed.value, message.value


def test_fault_rates_are_honoured_within_tolerance() -> None:
    n = 20_000
    messages = list(
        generate(
            options(
                count=n,
                malformed_rate=0.1,
                late_rate=0.05,
                max_lateness_s=900,
                out_of_order_rate=0.02,
            )
        )
    )
    malformed = [m for m in messages if m.malformed is not None]
    valid = [m for m in messages if m.malformed is None]
    late = [m for m in valid if m.lateness_ms]
    # four standard deviations of a binomial proportion
    assert abs(len(malformed) / n - 0.1) < 4 * (0.1 * 0.9 / n) ** 0.5
    assert abs(len(late) / len(valid) - 0.05) < 4 * (0.05 * 0.95 / len(valid)) ** 0.5
    assert abs(sum(m.out_of_order for m in messages) / n - 0.02) < 4 * (0.02 * 0.98 / n) ** 0.5
    kinds = Counter(m.malformed for m in malformed)
    assert set(kinds) == set(Malformation)
    assert all(abs(count / len(malformed) - 0.2) < 0.05 for count in kinds.values())
    beyond = sum(m.clock_ms - m.event_ms > 600_000 for m in late)
    assert 0.2 < beyond / len(late) < 0.45  # lateness uniform in 1..900 s: a third past 600 s


def test_out_of_order_messages_are_held_back_a_few_positions() -> None:
    messages = list(generate(options(count=5_000, out_of_order_rate=0.05)))
    by_clock = sorted(messages, key=lambda m: m.clock_ms)
    shifts = [messages.index(m) - by_clock.index(m) for m in messages if m.out_of_order]
    assert shifts and all(0 <= shift <= 9 for shift in shifts)
    assert sum(shift > 0 for shift in shifts) > 0.9 * len(shifts)
    in_order = [m.clock_ms for m in generate(options(count=5_000))]
    assert in_order == sorted(in_order)


def test_every_message_is_emitted_once_even_when_all_are_out_of_order() -> None:
    shuffled = list(generate(options(count=None, duration_s=60, out_of_order_rate=1.0)))
    plain = list(generate(options(count=None, duration_s=60)))
    assert sorted(m.value for m in shuffled) == sorted(m.value for m in plain)


def test_post_and_error_ratios_shape_the_requests() -> None:
    generated = generate(options(count=10_000, post_ratio=0.4, error_ratio=0.25))
    lines = [parse_log_line(m.value) for m in generated if m.stream is Stream.LOGS]
    assert all(isinstance(line, LogLine) for line in lines)
    posts = sum(line.method == "POST" for line in lines) / len(lines)
    errors = sum(not 200 <= line.status < 300 for line in lines) / len(lines)
    assert abs(posts - 0.4) < 0.03 and abs(errors - 0.25) < 0.03
