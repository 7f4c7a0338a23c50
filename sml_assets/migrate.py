"""The explicit schema migration: add what sml's tables lack (a metric field added since the table
was created, or the topic id and target table columns of positions and rows that an older sml made).
sml never alters a table by itself: a run stops with an error naming the column and this command.

    python -m sml_assets.migrate

Uses the same settings as the runs (SML_METRICS_DB_URL, SML_METRICS_TABLE, SML_KAFKA_*); safe to run
twice. Stop the schedule and sensor first.
"""

from __future__ import annotations

import argparse
import sys

from sml_assets.kafka_security import KafkaSettingsError
from sml_assets.resources import resources_now
from sml_assets.resources.database import DatabaseUnavailableError, MetricsDatabase
from sml_assets.resources.kafka import KafkaResource, KafkaUnavailableError, TopicMissingError


def migrate(kafka: KafkaResource, database: MetricsDatabase) -> int:
    missing = database.missing_columns()
    if not missing:
        print(f"nothing to migrate: the tables at {database.masked_url} have every column sml uses")
        return 0
    for table, columns in missing.items():
        print(f"{table} at {database.masked_url} lacks {', '.join(columns)}")
    positions = database.legacy_positions()
    stamps: dict[str, str] = {}
    for topic in sorted(database.legacy_topics()):
        try:
            topic_id = kafka.topic_id(topic)
            marks = kafka.watermarks(topic)
        except TopicMissingError:
            print(f"  {topic}: no longer exists; its rows are marked as of an unknown topic id")
            continue
        past = {p: o for p, o in positions.get(topic, {}).items() if p not in marks or o > marks[p].high}
        if past:
            print(
                f"  {topic}: stored offsets {past} are past its end, so they came from an earlier topic of "
                "that name: rows and positions are marked as of an unknown topic id (the next run then "
                "prints the command that adopts the topic)"
            )
            continue
        stamps[topic] = topic_id
        print(f"  {topic}: rows and positions are marked as of its current topic id {topic_id!r}")
    for line in database.migrate(stamps):
        print(f"migrated {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    description = (__doc__ or "").split("\n\n")[0]
    argparse.ArgumentParser(prog="python -m sml_assets.migrate", description=description).parse_args(argv)
    resources = resources_now()
    try:
        return migrate(resources.kafka, resources.metrics_db)
    except (DatabaseUnavailableError, KafkaUnavailableError, KafkaSettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
