"""Register the weekly zone rotation as a django-celery-beat entry (editable by ops in admin).

Runs every Monday at 06:00 UTC (`0 6 * * 1`) and calls `counts.tasks.rotation_plan_week_task`.
Idempotent: `get_or_create` on both rows, so re-applying (or a hand-made entry) is harmless.
"""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Weekly zone rotation"
TASK_PATH = "counts.tasks.rotation_plan_week_task"
CRONTAB = {
    "minute": "0",
    "hour": "6",
    "day_of_week": "1",
    "day_of_month": "*",
    "month_of_year": "*",
    "timezone": "UTC",
}


def create_rotation_task(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(**CRONTAB)
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK_PATH,
            "crontab": crontab,
            "enabled": True,
            "description": "Creates the week's cycle-count rotation runs for every facility.",
        },
    )
    # The scheduler only notices new rows when PeriodicTasks.last_update changes.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def delete_rotation_task(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME, task=TASK_PATH).delete()
    # Drop the crontab only if nothing else uses it.
    CrontabSchedule.objects.filter(**CRONTAB, periodictask__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("counts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_rotation_task, delete_rotation_task),
    ]
