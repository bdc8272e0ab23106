"""Register the event-ledger sweeps as django-celery-beat entries (editable by ops in admin).

Both run every minute:
- `audit.tasks.events_sweep_task` dispatches events whose on-commit dispatch was lost;
- `audit.tasks.webhook_deliveries_sweep_task` claims due webhook retries and expired leases.
Idempotent: `get_or_create` on every row, so re-applying (or a hand-made entry) is harmless.
"""

from django.db import migrations
from django.utils import timezone

EVERY_MINUTE = {"every": 1, "period": "minutes"}
TASKS = [
    (
        "Event ledger: dispatch lost events",
        "audit.tasks.events_sweep_task",
        "Dispatches events still undispatched a minute after they occurred (a lost on-commit enqueue).",
    ),
    (
        "Webhooks: send due deliveries",
        "audit.tasks.webhook_deliveries_sweep_task",
        "Claims webhook deliveries whose retry is due or whose worker's lease expired, and queues them.",
    ),
]


def create_sweep_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(**EVERY_MINUTE)
    for name, task, description in TASKS:
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "enabled": True, "description": description},
        )
    # The scheduler only notices new rows when PeriodicTasks.last_update changes.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_sweep_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, _ in TASKS:
        PeriodicTask.objects.filter(name=name, task=task).delete()
    # Drop the interval only if nothing else uses it.
    IntervalSchedule.objects.filter(**EVERY_MINUTE, periodictask__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_append_only_triggers"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_sweep_tasks, delete_sweep_tasks),
    ]
