"""The explicit schema migration: add to the metrics table the columns of metric fields added since
it was created (sml never alters a table by itself; a run stops with an error naming this command).

    python -m sml_assets.migrate

Uses the same settings as the runs (SML_METRICS_DB_URL, SML_METRICS_TABLE); safe to run twice.
"""
from __future__ import annotations

import argparse
import sys

from sml_assets.resources import resources_now
from sml_assets.resources.database import DatabaseUnavailableError, MetricsDatabase, SchemaMismatchError


def migrate(database: MetricsDatabase) -> list[str]:
    """Create the tables if missing, add the missing metric columns; the columns added."""
    try:
        database.ensure_tables()
    except SchemaMismatchError:
        pass
    return database.add_missing_metric_columns()


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n\n")[0]
    argparse.ArgumentParser(prog="python -m sml_assets.migrate", description=description).parse_args(argv)
    database = resources_now().metrics_db
    try:
        added = migrate(database)
    except (DatabaseUnavailableError, SchemaMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    where = f"{database.table} at {database.masked_url}"
    print(f"{where}: added column {', '.join(added)} (NULL in the rows already stored)" if added
          else f"{where}: already has every column sml writes; nothing to do")
    return 0


if __name__ == "__main__":
    sys.exit(main())
