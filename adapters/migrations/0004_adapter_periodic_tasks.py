"""Register the adapters' beat entries (django-celery-beat, editable by ops in admin).

- every minute: reclaim work dead workers left, then drain every connection with due pushes;
- every 5 minutes: sync every active connection into the mirror (and check parity).
Idempotent: get_or_create, so re-applying or a hand-made entry is harmless.
"""

from django.db import migrations
from django.utils import timezone

ENTRIES = [
    {
        "name": "Push drain sweep",
        "task": "adapters.tasks.push_drain_sweep_task",
        "every": 1,
        "description": "Reclaims expired worker leases and drains approved adjustments to each push target.",
    },
    {
        "name": "Backend sync",
        "task": "adapters.tasks.backend_sync_sweep_task",
        "every": 5,
        "description": "Pulls locations, items and on-hand from every active connection; confirms parity.",
    },
]


def create_entries(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for entry in ENTRIES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=entry["every"], period="minutes")
        PeriodicTask.objects.get_or_create(
            name=entry["name"],
            defaults={
                "task": entry["task"],
                "interval": interval,
                "enabled": True,
                "description": entry["description"],
            },
        )
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_entries(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for entry in ENTRIES:
        PeriodicTask.objects.filter(name=entry["name"], task=entry["task"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("adapters", "0003_connections_batches_parity"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entries, delete_entries)]
