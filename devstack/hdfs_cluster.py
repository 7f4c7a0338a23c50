"""The cluster profile's HDFS: its own NameNode (RPC 127.0.0.1:19000, WebHDFS http://127.0.0.1:19870)
and two DataNodes (19864/19866/19867 and 29864/29866/29867), replication 2, 512 MB heap each, data
under SML_DATA_DIR/stack/hdfs-cluster. The stack's one-DataNode HDFS on 9870 is left as it is.

A `devstack/stack.py` service (`up --cluster`); the daemons themselves are `hdfs.ReplicatedCluster`.
"""

from __future__ import annotations

import hdfs
from common import say

NAME = hdfs.CLUSTER_NAME


def up() -> None:
    hdfs.profile().start()
    say(NAME, status()[1])


def down() -> None:
    say(NAME, "stopping the DataNodes and the NameNode")
    hdfs.profile().stop()


def status() -> tuple[bool, str]:
    return hdfs.profile().status()
