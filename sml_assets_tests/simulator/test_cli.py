"""The command line, run as a user runs it: --stdout output, signals, bad flags, broker down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.faults import wait_until
from sml_assets_tests.simulator.grammar import parse_log_line, parse_metrics

SIMULATOR = [sys.executable, "-m", "simulator"]
CLOSED_PORT = "127.0.0.1:1"


def simulate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*SIMULATOR, *args], cwd=REPO_ROOT, capture_output=True, timeout=timeout)


def stdout_run(seed: int, *faults: str) -> bytes:
    result = simulate("--stdout", "--start", "2026-11-25T16:00:00Z", "--seed", str(seed), "--count", "500", *faults)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_stdout_prints_topic_and_value_lines_in_the_documented_formats() -> None:
    lines = stdout_run(3).splitlines()
    assert len(lines) == 500
    topics = {line.split(b"\t", 1)[0] for line in lines}
    assert topics == {b"test-topic4", b"test-topic3"}
    for line in lines:
        topic, value = line.split(b"\t", 1)
        parse = parse_metrics if topic == b"test-topic4" else parse_log_line
        assert not isinstance(parse(value), str), value


def test_stdout_with_the_same_seed_prints_the_same_lines() -> None:
    faults = ("--malformed-rate", "0.1", "--late-rate", "0.1", "--out-of-order", "0.1")
    assert stdout_run(11, *faults) == stdout_run(11, *faults)
    assert stdout_run(11, *faults) != stdout_run(12, *faults)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "sml-simulator"
    result = subprocess.run(
        [str(script), "--stdout", "--start", "2026-11-25T16:00:00Z", "--seed", "3", "--count", "500"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout == stdout_run(3)


def test_environment_names_the_topics() -> None:
    env = {**os.environ, "SML_METRICS_TOPIC": "m-env", "SML_LOGS_TOPIC": "l-env"}
    result = subprocess.run(
        [*SIMULATOR, "--stdout", "--start", "now", "--count", "200"],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert {line.split(b"\t")[0] for line in result.stdout.splitlines()} == {b"m-env", b"l-env"}


def test_invalid_rate_is_rejected_with_the_flag_named() -> None:
    result = simulate("--stdout", "--malformed-rate", "1.5")
    assert result.returncode == 2
    assert b"--malformed-rate is a fraction in [0, 1], got 1.5" in result.stderr


def test_sigterm_flushes_writes_the_truth_and_exits_cleanly(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    output = tmp_path / "out.txt"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [*SIMULATOR, "--stdout", "--log-rate", "200", "--seed", "5", "--truth", str(truth)],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.PIPE,
        )
    try:
        wait_until(
            lambda: output.stat().st_size > 0 or process.poll() is not None,
            30,
            f"the simulator's first line in {output}",
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 0, stderr
    assert b"stopped by SIGTERM" in stderr
    lines = output.read_bytes().splitlines()
    document = json.loads(truth.read_text())
    assert lines and document["acked"] == len(lines)


def test_unreachable_broker_fails_fast_with_a_clear_error() -> None:
    started = time.monotonic()
    result = simulate("--bootstrap-servers", CLOSED_PORT, "--broker-timeout", "3", "--count", "10", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"SML_KAFKA_BOOTSTRAP_SERVERS={CLOSED_PORT} did not answer within 3s" in message
    assert "make stack-up" in message
    assert elapsed < 30
