"""How the topics sml creates are replicated: SML_KAFKA_REPLICATION_FACTOR and
SML_KAFKA_MIN_INSYNC_REPLICAS, else what a production user chooses within the cluster's size."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from hypothesis import given
from hypothesis import strategies as st

from simulator.cli import main as simulator_main
from simulator.topics import MIN_INSYNC_VARIABLE, REPLICATION_VARIABLE, Replication, create_topics, topic_replication
from sml_assets_tests.conftest import delete_topics
from sml_assets_tests.faults import devstack_kafka


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [(1, Replication(1, 1)), (2, Replication(2, 1)), (3, Replication(3, 2)), (5, Replication(3, 2))],
)
def test_unset_settings_give_three_copies_two_in_sync_bounded_by_the_brokers(
    brokers: int, expected: Replication
) -> None:
    assert topic_replication(brokers, {}) == expected


def test_set_values_are_taken_as_they_are() -> None:
    environ = {REPLICATION_VARIABLE: "5", MIN_INSYNC_VARIABLE: "3"}
    assert topic_replication(7, environ) == Replication(5, 3)
    assert topic_replication(3, {MIN_INSYNC_VARIABLE: "3"}) == Replication(3, 3)


@pytest.mark.parametrize(
    ("brokers", "environ", "named"),
    [
        (1, {REPLICATION_VARIABLE: "3"}, f"{REPLICATION_VARIABLE}=3 but the cluster has 1 broker(s)"),
        (3, {MIN_INSYNC_VARIABLE: "4"}, f"{MIN_INSYNC_VARIABLE}=4 exceeds the replication factor 3"),
        (3, {REPLICATION_VARIABLE: "three"}, f"{REPLICATION_VARIABLE}='three' is not a whole number"),
        (3, {MIN_INSYNC_VARIABLE: "0"}, f"{MIN_INSYNC_VARIABLE}='0' is not a whole number of at least 1"),
    ],
)
def test_impossible_settings_are_refused_naming_the_variable(brokers: int, environ: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        topic_replication(brokers, environ)


@given(
    brokers=st.integers(1, 6),
    factor=st.sampled_from(["", "1", "2", "3", "4", "x"]),
    min_insync=st.sampled_from(["", "1", "2", "3", "0"]),
)
def test_the_stack_replicates_its_topics_by_the_same_rule(brokers: int, factor: str, min_insync: str) -> None:
    """devstack/kafka.py (standard library only) cannot import the simulator's rule, so it repeats it."""
    environ = {REPLICATION_VARIABLE: factor, MIN_INSYNC_VARIABLE: min_insync}
    kafka = devstack_kafka()
    try:
        expected = topic_replication(brokers, environ)
    except ValueError:
        with pytest.raises(kafka.StackError):
            kafka.topic_replication(brokers, environ)
    else:
        assert kafka.topic_replication(brokers, environ) == (expected.factor, expected.min_insync)


@pytest.mark.integration
def test_topics_created_on_the_single_broker_have_one_copy_and_an_existing_one_is_left_alone(
    kafka_bootstrap: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REPLICATION_VARIABLE, raising=False)
    monkeypatch.delenv(MIN_INSYNC_VARIABLE, raising=False)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topic = f"{unique_name}-replicated"
    try:
        assert create_topics(kafka_bootstrap, {topic: 2}) == Replication(1, 1)
        assert create_topics(kafka_bootstrap, {topic: 2}) == Replication(1, 1), "creating it again failed"
        [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
        assert future.result(timeout=10)["min.insync.replicas"].value == "1"
        assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 2
    finally:
        delete_topics(admin, [topic])


@pytest.mark.integration
def test_the_simulator_refuses_to_create_topics_with_more_copies_than_brokers_naming_the_variable(
    kafka_bootstrap: str, unique_name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(REPLICATION_VARIABLE, "3")
    topics = [f"{unique_name}-metrics", f"{unique_name}-logs"]
    argv = ["--bootstrap-servers", kafka_bootstrap, "--metrics-topic", topics[0], "--logs-topic", topics[1]]
    assert simulator_main([*argv, "--create-topics", "1", "--count", "1"]) == 2
    assert f"{REPLICATION_VARIABLE}=3 but the cluster has 1 broker(s): lower it" in capsys.readouterr().err
    assert not set(topics) & set(AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics)
