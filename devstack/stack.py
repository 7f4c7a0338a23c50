"""The local stack's one entry point: up, down, status for Kafka, HDFS, PostgreSQL and Spark's
Kafka connector jars, all on loopback, logs and data under SML_DATA_DIR/stack.

    python3 devstack/stack.py up [--cluster] [SERVICE ...]
    python3 devstack/stack.py down [--cluster] [--reset] [SERVICE ...]
    python3 devstack/stack.py status [--cluster] [SERVICE ...]
    python3 devstack/stack.py up spark-connect      # a Spark Connect server (SML_SPARK_REMOTE)

`make run` starts the Spark Connect server too; `down` without names stops it with the rest.

`--cluster` adds the cluster profile (CLUSTER_SERVICES: three Kafka nodes, an HDFS with two
DataNodes, a Spark standalone master and two workers) to the services. Every command is
idempotent. `status` exits 3 when a service is not up.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import time
from types import ModuleType

from common import StackError, stack_dir

SERVICES = ["kafka", "hdfs", "postgres", "spark_kafka"]
CLUSTER_SERVICES = ["kafka_cluster", "hdfs_cluster", "spark_cluster"]
"""The cluster profile, beside the single-node services: with --cluster, or named."""
OPTIONAL_SERVICES = ["spark_connect"]
"""Started only when named: the long-lived Spark of SML_SPARK_REMOTE."""
ALIASES = {
    "spark-kafka": "spark_kafka",
    "spark": "spark_kafka",
    "pg": "postgres",
    "postgresql": "postgres",
    "spark-connect": "spark_connect",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _selected(names: list[str], cluster: bool = False, optional: bool = False) -> list[str]:
    """The services named, else the default ones (and the optional ones too when `optional`)."""
    known = SERVICES + CLUSTER_SERVICES + OPTIONAL_SERVICES
    chosen = [ALIASES.get(n, n) for n in names] or SERVICES + (OPTIONAL_SERVICES if optional else [])
    chosen = chosen + (CLUSTER_SERVICES if cluster else [])
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise SystemExit(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [n for n in known if n in chosen]


def cmd_up(names: list[str]) -> int:
    failed: list[str] = []
    for name in names:
        started = time.monotonic()
        try:
            _module(name).up()
        except StackError as error:
            print(f"FAILED: {error}", file=sys.stderr, flush=True)
            failed.append(name)
        else:
            print(f"[{getattr(_module(name), 'NAME', name)}] ready in {time.monotonic() - started:.1f}s", flush=True)
    if failed:
        print(f"stack-up failed for: {', '.join(failed)} (logs under .sml-data/stack/<service>/)", file=sys.stderr)
        return 1
    return 0


def cmd_down(names: list[str], reset: bool) -> int:
    failed = False
    for name in reversed(names):
        module = _module(name)
        try:
            module.down()
        except StackError as error:
            print(f"FAILED: {error}", file=sys.stderr, flush=True)
            failed = True
            continue
        if reset:
            if hasattr(module, "reset"):
                module.reset()
            else:
                shutil.rmtree(stack_dir(getattr(module, "NAME", name)), ignore_errors=True)
            print(f"[{name}] data removed", flush=True)
    return 1 if failed else 0


def cmd_status(names: list[str]) -> int:
    all_up = True
    for name in names:
        module = _module(name)
        try:
            up, detail = module.status()
        except StackError as error:
            up, detail = False, str(error).splitlines()[0]
        all_up &= up
        print(f"{getattr(module, 'NAME', name):<12} {'up' if up else 'DOWN':<5} {detail}", flush=True)
    return 0 if all_up else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack/stack.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("services", nargs="*", help=f"default: all of {', '.join(SERVICES)}")
    parser.add_argument("--reset", action="store_true", help="with down: also delete the services' data")
    parser.add_argument("--cluster", action="store_true", help=f"also {', '.join(CLUSTER_SERVICES)}")
    args = parser.parse_intermixed_args(argv)
    names = _selected(args.services, args.cluster, optional=args.command == "down")
    if args.reset and args.command != "down":
        parser.error("--reset goes with down")
    if args.command == "up":
        return cmd_up(names)
    if args.command == "down":
        return cmd_down(names, args.reset)
    return cmd_status(names)


if __name__ == "__main__":
    sys.exit(main())
