"""The DESIGN.md section 2 grammar, written independently of the simulator and of sml's parsers.

Each check returns a parsed record or the malformed kind the simulator should have reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

LOG_LINE = re.compile(r"^(\S+) - (\S+) \[([^\]]+)\] (\S+) (\S+) (\d{3}) (\d+)$")
SEVEN_FIELDS = re.compile(r"^(\S+) - (\S+) \[([^\]]+)\] (\S+) (\S+) (\S+) (\S+)$")
RFC1123 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")
REQUIRED = ("id", "cpu", "mem", "disk")


@dataclass(frozen=True)
class Metrics:
    server_id: int
    cpu: float
    mem: float
    disk: float
    ts_ms: int | None


@dataclass(frozen=True)
class LogLine:
    ip: str
    user: str
    time: datetime
    method: str
    path: str
    status: int
    size: int


def parse_metrics(raw: bytes) -> Metrics | str:
    if not raw:
        return "empty"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    pairs: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition(":")
        if sep:
            pairs[key.strip()] = value.strip()
    if any(key not in pairs for key in REQUIRED):
        return "truncated"
    try:
        server_id = int(pairs["id"])
        cpu, mem, disk = (float(pairs[key]) for key in ("cpu", "mem", "disk"))
        ts_ms = int(pairs["ts"]) if "ts" in pairs else None
    except ValueError:
        return "wrong_types"
    if not all(0.0 <= value <= 100.0 for value in (cpu, mem, disk)) or server_id < 1:
        return "out_of_range"
    return Metrics(server_id, cpu, mem, disk, ts_ms)


def parse_log_line(raw: bytes) -> LogLine | str:
    if not raw:
        return "empty"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    match = LOG_LINE.match(text)
    if match is None:
        return "wrong_types" if SEVEN_FIELDS.match(text) else "truncated"
    ip, user, date, method, path, status, size = match.groups()
    if method not in ("GET", "POST"):
        return "wrong_types"
    try:
        moment = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return "out_of_range"
    if not RFC1123.match(date) or moment.strftime("%a") != date[:3]:
        return "out_of_range"
    return LogLine(ip, user, moment, method, path, int(status), int(size))
