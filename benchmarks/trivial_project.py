"""The yardstick for a run's fixed cost: one `@asset` returning 1, default executor, no resources.

`bench_run_cost.py` materializes it with the same `dagster asset materialize` CLI as sml's assets,
in the same run, so the ratio shows what sml adds on top of Dagster's own start-up.
"""

from dagster import Definitions, asset


@asset
def one() -> int:
    return 1


defs = Definitions(assets=[one])
