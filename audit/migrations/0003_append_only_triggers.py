"""Append-only on PostgreSQL: triggers refuse what the application must never do.

- audit_auditlog: DELETE is refused; UPDATE is refused unless the only change is clearing
  `actor_id` or `facility_id` (the ON DELETE SET NULL Django runs when a user or a facility is
  deleted), so deleting people keeps working and the reason itself can never change.
- audit_event: DELETE is refused; UPDATE is refused unless only the dispatch bookkeeping
  (`dispatched_at`, `subscriber_errors`) changes: type, payload, version, occurred_at, event_id
  and organization are fixed once written.

The comparisons are on the whole row minus the allowed columns, so columns added later are
protected too. TRUNCATE (test database flushes) is not affected. SQLite, the embedded default,
gets no triggers (its test flush deletes rows); the services are the guard there.
"""

from django.db import migrations

FORWARD = [
    """
    CREATE OR REPLACE FUNCTION audit_auditlog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'audit_auditlog is append-only: DELETE of row % refused', OLD.id
                USING HINT = 'The reason log is never deleted.';
        END IF;
        IF (to_jsonb(NEW) - 'actor_id' - 'facility_id') IS DISTINCT FROM (to_jsonb(OLD) - 'actor_id' - 'facility_id')
           OR (NEW.actor_id IS NOT NULL AND NEW.actor_id IS DISTINCT FROM OLD.actor_id)
           OR (NEW.facility_id IS NOT NULL AND NEW.facility_id IS DISTINCT FROM OLD.facility_id) THEN
            RAISE EXCEPTION 'audit_auditlog is append-only: UPDATE of row % refused', OLD.id
                USING HINT = 'Only clearing actor_id or facility_id (ON DELETE SET NULL) is allowed.';
        END IF;
        RETURN NEW;
    END;
    $$
    """,
    "DROP TRIGGER IF EXISTS audit_auditlog_append_only ON audit_auditlog",
    """
    CREATE TRIGGER audit_auditlog_append_only BEFORE UPDATE OR DELETE ON audit_auditlog
        FOR EACH ROW EXECUTE FUNCTION audit_auditlog_append_only()
    """,
    """
    CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'audit_event is append-only: DELETE of row % refused', OLD.id
                USING HINT = 'The event ledger is never deleted.';
        END IF;
        IF (to_jsonb(NEW) - 'dispatched_at' - 'subscriber_errors')
           IS DISTINCT FROM (to_jsonb(OLD) - 'dispatched_at' - 'subscriber_errors') THEN
            RAISE EXCEPTION 'audit_event is append-only: UPDATE of row % refused', OLD.id
                USING HINT = 'Only the dispatch bookkeeping (dispatched_at, subscriber_errors) may change.';
        END IF;
        RETURN NEW;
    END;
    $$
    """,
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event",
    """
    CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
        FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
]

BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
    "DROP TRIGGER IF EXISTS audit_auditlog_append_only ON audit_auditlog",
    "DROP FUNCTION IF EXISTS audit_auditlog_append_only()",
]


def _run_on_postgresql(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            # No parameters: the plpgsql bodies contain % placeholders of their own.
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_events_webhooks"),
    ]

    operations = [
        migrations.RunPython(_run_on_postgresql(FORWARD), _run_on_postgresql(BACKWARD)),
    ]
