from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Organizations and people"

    def ready(self) -> None:
        # Permissions exist only after every app has migrated; post_migrate is Django's own
        # hook for permission bootstrap (not business flow), so role groups are synced there.
        post_migrate.connect(_sync_role_groups, sender=self, dispatch_uid="accounts.role_groups_sync")


def _sync_role_groups(sender: AppConfig, **kwargs: object) -> None:
    from accounts.services import role_groups_sync

    role_groups_sync(using=kwargs.get("using", "default"))
