from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Organizations and people"

    def ready(self) -> None:
        # Permissions exist only after each app's post_migrate; syncing after every app (not
        # just ours) means the last call sees them all. This is Django's own hook for permission
        # bootstrap, not business flow.
        post_migrate.connect(_sync_role_groups, dispatch_uid="accounts.role_groups_sync")


def _sync_role_groups(sender: AppConfig, **kwargs: object) -> None:
    from accounts.services import role_groups_sync

    role_groups_sync(using=kwargs.get("using", "default"))
