"""sml's own Definitions with the HDFS folder moved under the benchmark's own path.

Everything else (assets, checks, jobs, executor, the other resources read from the environment)
is `sml_assets.definitions.defs` itself, so the timing is that of the real code location; only
the HDFS output no longer lands in the shared /user/<user>/HDFS_Proj.
"""

from __future__ import annotations

import os

from dagster import Definitions

from sml_assets import definitions as sml
from sml_assets.resources.hdfs import HdfsResource

defs = Definitions(
    assets=sml.defs.assets,
    asset_checks=sml.defs.asset_checks,
    jobs=sml.defs.jobs,
    schedules=sml.defs.schedules,
    sensors=sml.defs.sensors,
    executor=sml.defs.executor,
    resources={
        **(sml.defs.resources or {}),
        "hdfs": HdfsResource(
            url=os.environ.get("SML_HDFS_URL", "http://127.0.0.1:9870"),
            user=os.environ.get("SML_HDFS_USER", "root"),
            base_dir=os.environ["SML_BENCH_HDFS_DIR"],
            ca_location=os.environ.get("SML_HDFS_CA_LOCATION") or None,
        ),
    },
)
