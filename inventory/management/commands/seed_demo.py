from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inventory.demo import DEMO_USERS, demo_seed
from inventory.models import Item


class Command(BaseCommand):
    help = "Create the demo organization, facility WH1, items, balances and users (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--skus", type=int, default=2000, help="number of items (default 2000)")
        parser.add_argument("--seed", type=int, default=1, help="random seed; same seed, same data")
        parser.add_argument("--password", help="set this password for every demo user")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any item exists")

    def handle(
        self, *args: object, skus: int, seed: int, password: str | None, if_empty: bool, **options: object
    ) -> None:
        if if_empty and Item.objects.exists():
            self.stdout.write("Demo data already present; nothing to do.")
            return
        try:
            result = demo_seed(skus=skus, seed=seed, password=password)
        except ValueError as error:
            raise CommandError(str(error)) from None
        summary = ", ".join(f"{count} {kind}" for kind, count in result.created.items())
        self.stdout.write(f"Created: {summary}." if result.changed else "Demo data already complete; nothing changed.")
        if result.passwords:
            credentials = Path(settings.VAR_DIR) / "demo-credentials.txt"
            known = (
                dict(line.split(" ", 1) for line in credentials.read_text().splitlines() if " " in line)
                if credentials.exists()
                else {}
            )
            known.update(result.passwords)
            lines = [f"{username} {known[username]}" for username, _ in DEMO_USERS if username in known]
            credentials.write_text("\n".join(lines) + "\n")
            credentials.chmod(0o600)
            self.stdout.write(
                self.style.SUCCESS(f"Demo users (username password) — shown once, kept in {credentials}:")
            )
            for line in lines:
                self.stdout.write(f"  {line}")
