"""export_org / import_org: an organization survives a round trip into an empty database intact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from adapters.services import backend_sync, push_drain
from audit.backup import ArchiveInvalid, organization_export, organization_import
from inventory.demo import demo_seed
from tests.adapters.support import approve_adjustments

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def contents(path: Path) -> dict[str, list]:
    with zipfile.ZipFile(path) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist() if name.startswith("data/")}


def manage(env: dict, *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_an_organization_round_trips_through_an_empty_database(organization, manager, netsuite, synced, tmp_path):
    # A lived-in organization: the mirror from NetSuite, a reconciled count, pushes, a drift.
    approve_adjustments(organization, manager, {("NS-0000", "DALLAS-AISLE-1"): -1, ("NS-0001", "DALLAS-AISLE-2"): 1})
    push_drain(connection=synced)
    netsuite.set_on_hand(100, 10, Decimal(42))
    backend_sync(connection=synced)
    demo_seed(skus=20, seed=3, password="Demo-pass-123!")  # a second organization, which must stay out
    original = tmp_path / "acme.zip"
    summary = organization_export(organization=organization, path=original)
    assert summary.rows["adapters.pushbatch"] == 2
    assert summary.rows["audit.event"] > 0
    assert summary.rows["inventory.historicalinventorybalance"] > 0

    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'restored.sqlite3'}",
        "CYCLECOUNT_VAR_DIR": str(tmp_path / "var"),
        "CYCLECOUNT_SECRETS_KEYS": ",".join(settings.CONNECTION_SECRETS_KEYS),
    }
    manage(env, "migrate", "--noinput", "-v0")
    assert "restored acme" in manage(env, "import_org", str(original))
    manage(env, "export_org", "acme", "--output", str(tmp_path / "again.zip"))

    restored, again = contents(original), contents(tmp_path / "again.zip")
    assert restored.keys() == again.keys()
    for name in restored:
        assert restored[name] == again[name], name
    exported_users = {row["fields"]["username"] for row in restored["data/auth.user.json"]}
    assert "manager" in exported_users
    assert not exported_users & {"planner", "associate1"}  # the demo organization's people stay home
    assert "accounts.edittoken" not in json.dumps(list(restored))

    # Importing twice is refused, all or nothing.
    failed = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "import_org", str(original)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert failed.returncode != 0
    assert "already holds an organization" in failed.stderr


def test_a_damaged_archive_restores_nothing(organization, tmp_path, django_db_blocker):
    path = tmp_path / "acme.zip"
    organization_export(organization=organization, path=path)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(damaged, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "data/inventory.facility.json":
                data = data.replace(b"[]", b'[{"model": "inventory.facility", "pk": 1, "fields": {}}]')
            target.writestr(name, data)
    organization.delete()

    with pytest.raises(ArchiveInvalid, match="checksum"):
        organization_import(path=damaged)


def test_the_commands_name_what_is_wrong(tmp_path):
    with pytest.raises(CommandError, match="no organization"):
        call_command("export_org", "nobody", "--output", str(tmp_path / "x.zip"))
    with pytest.raises(CommandError, match="no such archive"):
        call_command("import_org", str(tmp_path / "missing.zip"))
