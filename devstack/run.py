"""`make run`: the simulator at a modest rate plus `dg dev` (webserver, daemon and a code server
for the project named in pyproject.toml's [tool.dg]), on the running local stack. Ctrl-C (or
SIGTERM) stops both.

log_summary runs on the stack's Spark Connect server (started here, left up like the other
services): each run then opens a session in about a second on a Spark whose JIT is warm, instead of
starting a JVM of its own (README, "Spark Connect"). SML_SPARK_REMOTE, when set, decides instead:
another server's URL, or empty for Spark in each run's process.

Runs with the project's venv; DAGSTER_HOME is persistent under SML_DATA_DIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import StackError
from common import data_dir as sml_data_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UI_START_TIMEOUT_S = 180.0


def _dagster_home(data_dir: Path) -> Path:
    home = Path(os.environ.get("DAGSTER_HOME", data_dir / "dagster-home"))
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def _wait_for_ui(url: str, dagster: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """True once the webserver answers; False if `dagster dev` exits or the deadline passes."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout_s
    while dagster.poll() is None and time.monotonic() < deadline:
        try:
            with opener.open(f"{url}/server_info", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def _spark_remote(env: dict[str, str]) -> str:
    """SML_SPARK_REMOTE as the user set it, else the stack's Connect server's URL (started if down)."""
    if "SML_SPARK_REMOTE" in env:
        return env["SML_SPARK_REMOTE"]
    import spark_connect

    try:
        spark_connect.up()
    except StackError as error:
        raise SystemExit(
            f"{error}\nthe Spark Connect server did not start: see its log, or run with SML_SPARK_REMOTE= "
            "(empty) to start Spark in each log_summary run's process instead"
        ) from None
    return spark_connect.SERVER.url


def _default_sigint() -> None:
    """Let `dg dev` see Ctrl-C even when run.py was started with SIGINT ignored (in background)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main() -> int:
    data_dir = sml_data_dir()
    env = {**os.environ, "SML_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(_dagster_home(data_dir))}
    env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    port = env.get("SML_DAGSTER_PORT", "3000")
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    simulator_args = env.get("SML_RUN_SIMULATOR_ARGS", "--log-rate 20 --metrics-interval 5").split()
    env["SML_SPARK_REMOTE"] = _spark_remote(env)
    print(
        f"log_summary: Spark Connect at {env['SML_SPARK_REMOTE']} (SML_SPARK_REMOTE)"
        if env["SML_SPARK_REMOTE"]
        else "log_summary: Spark in each run's process (SML_SPARK_REMOTE is empty)",
        flush=True,
    )
    children: list[subprocess.Popen[bytes]] = []
    with open(logs / "simulator.log", "ab") as simulator_log:
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "simulator", *simulator_args],
                cwd=REPO_ROOT,
                env=env,
                stdout=simulator_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    print(f"simulator: sending to the stack's Kafka (log: {logs / 'simulator.log'})", flush=True)
    children.append(
        subprocess.Popen(
            [str(BIN / "dg"), "dev", "-h", "127.0.0.1", "-p", port],
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )
    )
    ui = f"http://127.0.0.1:{port}"

    def stop(*_: object) -> None:
        """SIGTERM makes the simulator flush; `dg dev` shuts down its services on SIGINT."""
        for child, sig in zip(children, (signal.SIGTERM, signal.SIGINT)):
            if child.poll() is None:
                os.kill(child.pid, sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())
    try:
        print(f"Dagster UI: starting on {ui} ...", flush=True)
        if _wait_for_ui(ui, children[-1], UI_START_TIMEOUT_S):
            print(
                f"Dagster UI: {ui}  (Ctrl-C stops the simulator and Dagster; `make stack-down` stops the services)",
                flush=True,
            )
        elif children[-1].poll() is None:
            print(
                f"Dagster UI: {ui}/server_info did not answer within {UI_START_TIMEOUT_S:.0f}s; "
                "`dagster dev` is still starting, see its output above (Ctrl-C stops everything)",
                flush=True,
            )
        children[-1].wait()
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
