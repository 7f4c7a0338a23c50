"""The end-of-session leak check finds the processes a session started, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from sml_assets_tests.conftest import SESSION
from sml_assets_tests.leaks import SESSION_VARIABLE, Leaks, _marked_processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def sleeper() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A process marked as started by another session (so this session's own check ignores it)."""
    other = f"probe-{uuid.uuid4().hex[:6]}"
    process = subprocess.Popen(SLEEPER, env={**os.environ, SESSION_VARIABLE: other})
    try:
        yield process, other
    finally:
        process.kill()
        process.wait(timeout=30)


def test_a_marked_process_is_found_while_it_lives(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    process, session = sleeper
    assert process.pid in _marked_processes(session)
    process.kill()
    process.wait(timeout=30)
    assert process.pid not in _marked_processes(session)


def test_processes_of_other_sessions_and_pytest_itself_are_not_this_sessions(
    sleeper: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, _ = sleeper
    mine = _marked_processes(SESSION)
    assert process.pid not in mine and os.getpid() not in mine


def test_the_report_lists_only_what_was_found() -> None:
    leaks = Leaks({"Kafka topics": ["t_abc123_x-0"], "processes": []})
    assert leaks and leaks.report() == "Kafka topics: t_abc123_x-0"
    assert not Leaks({"processes": []})
