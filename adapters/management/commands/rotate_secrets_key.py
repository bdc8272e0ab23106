"""Re-encrypt every backend connection's secrets with the first key of CYCLECOUNT_SECRETS_KEYS."""

from __future__ import annotations

import getpass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import system_actor
from adapters.secrets import secrets_key_generate
from adapters.services.secrets_rotation import RotationResult, SecretsRotationBlocked, connection_secrets_rotate


class Command(BaseCommand):
    help = (
        "Rotate the connection secrets key: put the new key first in CYCLECOUNT_SECRETS_KEYS (old keys after it), "
        "run this, then remove the keys it reports unused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--generate", action="store_true", help="print a fresh Fernet key to put first, and change nothing"
        )
        parser.add_argument("--dry-run", action="store_true", help="report what would be re-encrypted; write nothing")
        parser.add_argument("--actor", help="username recorded in the reason log (default: the system user)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["generate"]:
            # stdout only, never a log: the operator copies it into the environment.
            self.stdout.write(secrets_key_generate())
            return
        actor = system_actor()
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"no user {options['actor']!r}")
        try:
            result = connection_secrets_rotate(actor=actor, operator=_operator(), dry_run=options["dry_run"])
        except SecretsRotationBlocked as blocked:
            raise CommandError(str(blocked)) from None
        self._report(result)

    def _report(self, result: RotationResult) -> None:
        prefix = "dry run: would re-encrypt" if result.dry_run else "re-encrypted"
        self.stdout.write(
            f"{prefix} {len(result.rotated)} connection(s) with key 1 ({result.primary_fingerprint}); "
            f"{result.already_current} already used it"
        )
        for rotated in result.rotated:
            self.stdout.write(f"  {rotated.organization_slug}/{rotated.name}: from key {rotated.from_key + 1}")
        for index, fingerprint in enumerate(result.key_fingerprints):
            count = result.keys_in_use.get(index, 0)
            status = f"in use by {count} connection(s)" if count else "not in use"
            if index > 0 and not count:
                status += " — can be removed from CYCLECOUNT_SECRETS_KEYS"
            self.stdout.write(f"key {index + 1} ({fingerprint}): {status}")


def _operator() -> str:
    """Who ran the command, as the operating system knows them (recorded with the rotation)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return ""
