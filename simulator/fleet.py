"""The server fleet: each server's cpu/mem/disk drift slowly around its own baseline."""

from __future__ import annotations

from dataclasses import dataclass
from random import Random


@dataclass(slots=True)
class Reading:
    """One metrics sample of one server, in percent."""

    server_id: int
    cpu: float
    mem: float
    disk: float


@dataclass(slots=True)
class _Server:
    server_id: int
    cpu: float
    mem: float
    disk: float
    cpu_base: float
    mem_base: float


def _clamp(value: float) -> float:
    return 0.0 if value < 0.0 else 100.0 if value > 100.0 else value


class Fleet:
    """Servers 1..size whose readings are a mean-reverting random walk, reproducible from the
    seed."""

    def __init__(self, size: int, seed: int) -> None:
        self._rng = Random(f"{seed}/fleet")
        rng = self._rng
        self._servers = [
            _Server(
                server_id=server_id,
                cpu=(cpu := rng.uniform(15.0, 70.0)),
                mem=(mem := rng.uniform(30.0, 80.0)),
                disk=rng.uniform(20.0, 85.0),
                cpu_base=cpu,
                mem_base=mem,
            )
            for server_id in range(1, size + 1)
        ]

    @property
    def size(self) -> int:
        return len(self._servers)

    def read(self, server_id: int) -> Reading:
        """Advance one server by one interval and return its new reading (one decimal)."""
        server = self._servers[server_id - 1]
        gauss = self._rng.gauss
        server.cpu = _clamp(server.cpu + gauss(0.0, 3.0) + 0.1 * (server.cpu_base - server.cpu))
        server.mem = _clamp(server.mem + gauss(0.0, 1.0) + 0.05 * (server.mem_base - server.mem))
        server.disk = _clamp(server.disk + abs(gauss(0.0, 0.02)))
        return Reading(server_id, round(server.cpu, 1), round(server.mem, 1), round(server.disk, 1))


def render_metrics(reading: Reading, ts_ms: int) -> bytes:
    """The DESIGN.md section 2 metrics line: `id: 7, cpu: 63.2, mem: 41.0, disk: 77.5, ts: ...`."""
    return (
        f"id: {reading.server_id}, cpu: {reading.cpu:.1f}, mem: {reading.mem:.1f}, "
        f"disk: {reading.disk:.1f}, ts: {ts_ms}"
    ).encode()
