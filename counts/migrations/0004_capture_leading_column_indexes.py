"""Capture: no session-only index on events and no run-only index on tallies.

(session, location, item) on events and (run, location, item) on tallies lead with those
columns and serve every query that used the single-column indexes. While a new run or session
is missing from the planner's statistics, the single-column index looked as cheap and was
chosen for the per-scan rebuild, which then read every tally of the run (or every event of the
session) on each scan. Only the two indexes go; the foreign-key constraints are not touched
(an AlterField would drop and re-validate them, locking both tables for a full scan).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("counts", "0003_capture_replay_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="countevent",
                    name="session",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="counts.countsession",
                    ),
                ),
                migrations.AlterField(
                    model_name="sessiontally",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="counts.countrun",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "counts_countevent_session_id_2ec77311"',
                    reverse_sql=(
                        'CREATE INDEX "counts_countevent_session_id_2ec77311" ON "counts_countevent" ("session_id")'
                    ),
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "counts_sessiontally_run_id_9a6b0caa"',
                    reverse_sql=(
                        'CREATE INDEX "counts_sessiontally_run_id_9a6b0caa" ON "counts_sessiontally" ("run_id")'
                    ),
                ),
            ],
        ),
    ]
