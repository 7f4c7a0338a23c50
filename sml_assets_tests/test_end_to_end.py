"""sml end to end, through the Dagster machinery only (the `dg` CLI and a Dagster instance),
checked exactly against the simulator's ground truth: SQL table, dead letters, CSV, HDFS copy."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from hdfs import InsecureClient
from sqlalchemy import create_engine, text

from simulator.topics import wait_for_topics
from sml_assets_tests.conftest import REPO_ROOT
from sml_assets_tests.e2e import BIN, Deployment, csv_windows, expected_windows

ARTIFACTS = REPO_ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.integration, pytest.mark.launches]

SIMULATION = [
    "--seed",
    "11",
    "--servers",
    "10",
    "--metrics-interval",
    "20",
    "--log-rate",
    "3",
    "--malformed-rate",
    "0.03",
    "--post-ratio",
    "0.3",
    "--error-ratio",
    "0.15",
    "--skewed-clock-rate",
    "0.01",
]


BOTH_JOBS = (("dg", "launch", "--job", "ingest_metrics_job"), ("dg", "launch", "--job", "summarize_logs_job"))
"""Independent jobs (own topic, own outputs, own pool), launched side by side as a user may: the
metrics run works while the logs run starts its JVM."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, stack: None) -> Iterator[Deployment]:
    """The module's deployment; its topics and its HDFS user folder go afterwards, pass or fail."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from sml_assets_tests.conftest import KAFKA_BOOTSTRAP, TEST_PREFIX, TOPIC_READY_S, delete_topics

    root = tmp_path_factory.mktemp("e2e")
    name = f"{TEST_PREFIX}e2e_{uuid.uuid4().hex[:8]}"
    topics = {f"{name}-metrics": 3, f"{name}-logs": 2}
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    futures = admin.create_topics([NewTopic(topic, partitions, 1) for topic, partitions in topics.items()])
    deployment = Deployment.create(root, name, *topics)
    try:
        for future in futures.values():
            future.result(timeout=30)
        wait_for_topics(KAFKA_BOOTSTRAP, topics, TOPIC_READY_S)
        yield deployment
    finally:
        delete_topics(admin, list(topics))
        InsecureClient(deployment.env["SML_HDFS_URL"], user=name).delete(f"/user/{name}", recursive=True)


def read_table(deployment: Deployment) -> list[tuple]:
    engine = create_engine(deployment.env["SML_METRICS_DB_URL"])
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT server_id, kafka_topic, kafka_partition, kafka_offset FROM server_matric")
        ).all()
    engine.dispose()
    return rows


def count_dead_letters(deployment: Deployment) -> int:
    engine = create_engine(deployment.env["SML_METRICS_DB_URL"])
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM sml_dead_letters")).scalar_one()
    engine.dispose()
    return count


def assert_outputs_match(deployment: Deployment, truths: list[dict]) -> None:
    rows = read_table(deployment)
    assert len({(r[1], r[2], r[3]) for r in rows}) == len(rows), "a Kafka message is in the table twice"
    per_server = Counter(str(r[0]) for r in rows)
    expected_per_server: Counter = Counter()
    for truth in truths:
        expected_per_server.update(truth["metrics"]["valid_per_server"])
    assert per_server == expected_per_server
    assert count_dead_letters(deployment) == sum(
        t["metrics"]["malformed_total"] + t["metrics"]["skewed"] for t in truths
    )

    local = deployment.summary_csv.read_bytes()
    windows = csv_windows(local)
    expected = expected_windows(truths)
    assert sorted(windows) == sorted(expected)
    for start, counts in expected.items():
        got = {k: int(windows[start][k]) for k in counts}
        assert got == dict(counts), f"window {start}"
    assert list(windows) == sorted(windows), "CSV rows are not sorted by window"

    client = InsecureClient(deployment.env["SML_HDFS_URL"], user=deployment.name)
    with client.read(deployment.hdfs_path) as reader:
        assert reader.read() == local, "the HDFS copy differs from the local CSV"


def test_jobs_run_through_dagster_match_the_truth_exactly(deployment: Deployment) -> None:
    first = deployment.simulate(*SIMULATION, "--start", "2026-11-25T16:00:00Z", "--duration", "1500")
    deployment.run_together(*BOTH_JOBS)
    assert_outputs_match(deployment, [first])
    assert first["metrics"]["skewed"] > 0 and first["logs"]["skewed"] > 0, "no clock ahead in the simulation"

    metrics = deployment.latest_metadata("server_metrics")
    assert metrics["rows inserted"] == first["metrics"]["valid"]
    assert metrics["dead letters"] == first["metrics"]["malformed_total"] + first["metrics"]["skewed"]
    assert metrics["dead letters by reason"]["event time s ahead of the record timestamp"] == first["metrics"]["skewed"]
    logs = deployment.latest_metadata("log_summary")
    assert logs["rejects"] == first["logs"]["malformed_total"] + first["logs"]["skewed"]
    assert logs["rejects_by_reason"]["event time s ahead of the record timestamp"] == first["logs"]["skewed"]
    assert logs["input_rows"] == first["logs"]["valid"] + first["logs"]["malformed_total"] + first["logs"]["skewed"]
    assert deployment.latest_metadata("hdfs_log_summary")["bytes"] == deployment.summary_csv.stat().st_size

    second = deployment.simulate(*SIMULATION, "--seed", "12", "--start", "2026-11-25T16:25:00Z", "--duration", "1200")
    deployment.run_together(*BOTH_JOBS)
    assert_outputs_match(deployment, [first, second])
    windows = csv_windows(deployment.summary_csv.read_bytes())
    assert windows["2026-11-25T16:00:00Z"]["final"].lower() == "true"
    assert list(windows.values())[-1]["final"].lower() == "false"


def test_cli_materializes_each_asset_and_all_of_them(deployment: Deployment) -> None:
    """The README's commands: materialize one asset, then all three, and validate (beside the run)."""
    truth = deployment.simulate(*SIMULATION, "--seed", "13", "--start", "2026-11-25T17:00:00Z", "--duration", "600")
    before = len(read_table(deployment))
    deployment.run("dg", "launch", "--assets", "server_metrics")
    assert len(read_table(deployment)) == before + truth["metrics"]["valid"]
    _, result = deployment.run_together(
        ("dg", "launch", "--assets", "server_metrics,log_summary,hdfs_log_summary"), ("dg", "check", "defs")
    )
    assert len(read_table(deployment)) == before + truth["metrics"]["valid"], "a rerun added rows"
    assert deployment.latest_metadata("hdfs_log_summary")["bytes"] == deployment.summary_csv.stat().st_size
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(deployment: Deployment) -> Iterator[str]:
    """dagster-webserver on a free loopback port over the deployment's instance."""
    import subprocess
    import urllib.request

    from sml_assets_tests.faults import wait_until

    port = free_port()
    log_path = deployment.root / "webserver.log"
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, f"dagster-webserver exited with {process.returncode}; see {log_path}"
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=2):
                return True
        except OSError:
            return False

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-m", "sml_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=deployment.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(answers, 120, f"dagster-webserver answering {base}/server_info (log: {log_path})", 0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


ASSET_NAMES = ["metrics_topic", "logs_topic", "server_metrics", "log_summary", "hdfs_log_summary"]
PARENTS = {"server_metrics": "metrics_topic", "log_summary": "logs_topic", "hdfs_log_summary": "log_summary"}


def test_ui_shows_lineage_and_latest_metadata(deployment: Deployment, webserver: str) -> None:
    """In a real browser: the global lineage graph holds every asset, each asset's upstream view
    shows exactly its parent (the lineage edges), and the asset page shows the latest metadata,
    the data itself as tables (newest rows, latest per server, newest windows), the freshness
    policy and the fleet_health check."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    rows_inserted = deployment.latest_metadata("server_metrics")["rows inserted"]
    windows_total = deployment.latest_metadata("log_summary")["windows_total"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            dismiss_welcome(page)
            page.goto(f"{webserver}/asset-groups")
            expect(page.locator('[data-tooltip="kafka"]').first).to_be_visible(timeout=30_000)
            dismiss_welcome(page)
            expand_all_groups(page)
            graph = page.locator("[data-svg-viewport]").first
            for name in ASSET_NAMES:
                expect(graph.get_by_text(name, exact=True).first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "asset-lineage.png"))

            for child, parent in PARENTS.items():
                page.goto(f"{webserver}/assets/{child}?view=lineage&lineageScope=upstream&lineageDepth=1")
                graph = page.locator("[data-svg-viewport]").first
                expect(graph.get_by_text(parent, exact=True).first).to_be_visible(timeout=30_000)
                expect(graph.get_by_text(child, exact=True).first).to_be_visible()
                shown = {name for name in ASSET_NAMES if graph.get_by_text(name, exact=True).count()}
                assert shown == {parent, child}, f"upstream of {child} shows {shown}"
                page.screenshot(path=str(ARTIFACTS / f"lineage-{child}.png"))

            page.goto(f"{webserver}/assets/server_metrics")
            row = page.locator("tr", has_text="rows inserted").first
            expect(row).to_contain_text(str(rows_inserted), timeout=30_000)
            row.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "server_metrics-metadata.png"))
            for label in ("newest rows", "latest per server"):
                table = page.locator("tr", has_text=label).first
                expect(table).to_contain_text("server_id", timeout=30_000)
                expect(table).to_contain_text("disk")
            newest = page.locator("tr", has_text="latest per server").first
            newest.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "server_metrics-tables.png"), full_page=True)
            freshness = page.get_by_text("Fails if more than 5 minutes since last materialization").first
            expect(freshness).to_be_visible(timeout=30_000)

            page.goto(f"{webserver}/assets/server_metrics?view=checks")
            expect(page.get_by_text("fleet_health").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "server_metrics-checks.png"))

            page.goto(f"{webserver}/assets/log_summary")
            expect(page.locator("tr", has_text="windows_total").first).to_contain_text(
                str(windows_total), timeout=30_000
            )
            windows = page.locator("tr", has_text="newest windows").first
            expect(windows).to_contain_text("window_start", timeout=30_000)
            expect(windows).to_contain_text("GET_success")
            windows.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "log_summary-windows.png"))
        finally:
            page.screenshot(path=str(ARTIFACTS / "last-page.png"))
            browser.close()


def expand_all_groups(page, timeout_s: float = 60) -> None:
    """Open the lineage settings menu and choose 'Expand all groups'. The welcome dialog may show
    up after the menu opened, and skipping it closes the menu: then open the menu again."""
    import time

    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout_s
    while True:
        page.locator('[aria-label="settings"]').last.click()
        try:
            page.locator("text=Expand all groups >> visible=true").first.click(timeout=5_000)
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the lineage settings menu did not offer 'Expand all groups' within {timeout_s:g} s"
                ) from None
            page.keyboard.press("Escape")
            continue
        page.keyboard.press("Escape")
        return


def dismiss_welcome(page) -> None:
    """Dagster's first-visit community dialog covers the page whenever it shows up (on a busy
    machine, well after the page loads): skip it before any action or assertion it would block."""
    page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
