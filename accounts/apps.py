from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate, pre_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Organizations and people"

    def ready(self) -> None:
        # Permissions exist only after each app's post_migrate; syncing after every app (not
        # just ours) means the last call sees them all. This is Django's own hook for permission
        # bootstrap, not business flow.
        post_migrate.connect(_sync_role_groups, dispatch_uid="accounts.role_groups_sync")

        # Row-level security (accounts.tenancy): migrate logs its bypass, then (re)installs the
        # role, grants and policies once per run, so new tables are covered; new connections
        # get the wanted tenant state before their first query.
        from accounts import tenancy

        pre_migrate.connect(tenancy.migrate_bypass_log, sender=self, dispatch_uid="accounts.rls_migrate_log")
        post_migrate.connect(tenancy.policies_install, sender=self, dispatch_uid="accounts.rls_install")
        connection_created.connect(tenancy.connection_prepare, dispatch_uid="accounts.rls_connection_prepare")


def _sync_role_groups(sender: AppConfig, **kwargs: object) -> None:
    from accounts.services import role_groups_sync

    role_groups_sync(using=kwargs.get("using", "default"))
