"""The cluster profile's Kafka: three KRaft nodes (combined broker+controller, 512 MB heap each) on
127.0.0.1:19092/19093, 29092/29093, 39092/39093, data under SML_DATA_DIR/stack/kafka-cluster.

A `devstack/stack.py` service (`up --cluster`); the nodes themselves are `kafka.KafkaCluster`.
"""

from __future__ import annotations

import kafka

NAME = kafka.CLUSTER_NAME
up = kafka.cluster_up
down = kafka.cluster_down
status = kafka.cluster_status
