"""The load balancer: requests spread over the servers, written as access-log lines."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from random import Random

SUCCESS_STATUSES = (200, 200, 200, 201, 204)
ERROR_STATUSES = (301, 400, 403, 404, 404, 500, 502, 503)
GET_PATHS = ("/files/report.pdf", "/index.html", "/images/logo.png", "/api/status", "/files/data.csv")
POST_PATHS = ("/api/upload", "/login", "/api/orders", "/api/metrics")
USERS = 500

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True)
class Request:
    """One request as the load balancer logs it."""

    server_id: int
    user: str
    method: str
    path: str
    status: int
    size: int


def server_ip(server_id: int) -> str:
    """Server n answers on 10.0.0.0 + n (10.0.0.7 for server 7)."""
    return str(ipaddress.IPv4Address("10.0.0.0") + server_id)


def rfc1123(epoch_s: int) -> str:
    """`Wed, 25 Nov 2026 16:00:03 GMT`, with English names whatever the locale."""
    t = time.gmtime(epoch_s)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


class LoadBalancer:
    """Draws requests from the configured mix; reproducible from the seed."""

    def __init__(self, servers: int, post_ratio: float, error_ratio: float, seed: int) -> None:
        self._rng = Random(f"{seed}/loadbalancer")
        self._servers = servers
        self._post_ratio = post_ratio
        self._error_ratio = error_ratio
        self._users = [f"user{n}" for n in range(1, USERS + 1)]

    def request(self) -> Request:
        """Draws with `random()` alone: `randrange`/`choice` would halve the burst throughput."""
        random = self._rng.random
        post = random() < self._post_ratio
        paths = POST_PATHS if post else GET_PATHS
        statuses = ERROR_STATUSES if random() < self._error_ratio else SUCCESS_STATUSES
        return Request(
            server_id=int(random() * self._servers) + 1,
            user=self._users[int(random() * USERS)],
            method="POST" if post else "GET",
            path=paths[int(random() * len(paths))],
            status=statuses[int(random() * len(statuses))],
            size=200 + int(random() * 59_800),
        )

    def gap_ms(self, rate_per_s: float) -> float:
        """Time to the next request: requests arrive as a Poisson process of the given rate."""
        return self._rng.expovariate(rate_per_s) * 1000.0


class LineRenderer:
    """Formats requests as access-log lines, caching the date string of the current second."""

    def __init__(self) -> None:
        self._ips: dict[int, str] = {}
        self._second = -1
        self._date = ""

    def render(self, request: Request, epoch_s: int) -> bytes:
        """`10.0.0.7 - user42 [Wed, 25 Nov 2026 16:00:03 GMT] GET /files/report.pdf 200 5123`."""
        if epoch_s != self._second:
            self._second, self._date = epoch_s, rfc1123(epoch_s)
        ip = self._ips.get(request.server_id)
        if ip is None:
            ip = self._ips[request.server_id] = server_ip(request.server_id)
        return (
            f"{ip} - {request.user} [{self._date}] {request.method} {request.path} {request.status} {request.size}"
        ).encode()
