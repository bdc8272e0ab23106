"""One organization's data as a portable archive, and its restore into an empty database.

The archive is a zip: `manifest.json` (format, organization, schema state, and per file its
model, row count and SHA-256) and one JSON file per model in Django's serialization format —
the mirror, counts, decisions, pushes, the reason log, the event ledger and every model's
history, plus the users those rows name (with their password hashes, so people can log in to a
restored system). Foreign keys to users and groups are written by natural key (username, group
name); every other row keeps its primary key, which is why the target database must be empty.

Left out on purpose: API and edit tokens (people issue new ones after a restore), webhook
deliveries' leases (restored as they were). Backend connection secrets stay encrypted: restore
with the same CYCLECOUNT_SECRETS_KEYS or re-enter them.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from accounts.models import Organization

FORMAT = "cyclecount-org-archive/1"
DOMAIN_APPS = ("accounts", "inventory", "counts", "reconciliation", "approvals", "adapters", "audit")
# Secrets a restore must not carry over (they are re-issued).
EXCLUDED = {"accounts.edittoken"}
CHUNK = 2000


class ArchiveInvalid(Exception):
    pass


@dataclass(frozen=True)
class ArchiveSummary:
    organization: str
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _label(model: type[models.Model]) -> str:
    return model._meta.label_lower


def _organization_models() -> list[type[models.Model]]:
    """Every model of our apps, in a load-friendly order (organization first, history last)."""
    found = [
        model for app in DOMAIN_APPS for model in apps.get_app_config(app).get_models() if _label(model) not in EXCLUDED
    ]
    return sorted(
        found, key=lambda model: (model is not Organization, _label(model).split(".")[1].startswith("historical"))
    )


def _rows_of(model: type[models.Model], organization: Organization) -> models.QuerySet:
    names = {field.name for field in model._meta.get_fields()}
    if model is Organization:
        return model.objects.filter(pk=organization.pk)
    if "organization" in names:
        return model._default_manager.filter(organization=organization)
    if model._meta.model_name == "historicalorganization":
        return model._default_manager.filter(id=organization.pk)
    raise ArchiveInvalid(f"{_label(model)} has no organization; decide how it is archived")


def _user_fields(model: type[models.Model]) -> list[str]:
    user_model = get_user_model()
    return [field.attname for field in model._meta.fields if field.is_relation and field.related_model is user_model]


def _schema_state() -> dict[str, str]:
    latest: dict[str, str] = {}
    for app, name in MigrationRecorder.Migration.objects.values_list("app", "name"):
        latest[app] = max(latest.get(app, ""), name)
    return latest


def organization_export(*, organization: Organization, path: Path) -> ArchiveSummary:
    """Write the organization's archive to `path`. Reads in one repeatable snapshot on PostgreSQL."""
    manifest: dict = {
        "format": FORMAT,
        "organization": {"slug": organization.slug, "name": organization.name, "id": organization.pk},
        "exported_at": timezone.now().isoformat(),
        "schema": _schema_state(),
        "files": [],
    }
    rows: dict[str, int] = {}
    user_ids: set[int] = set()
    outermost = not connection.in_atomic_block
    with transaction.atomic(), zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if outermost and connection.vendor == "postgresql":
            # One snapshot for every file (only possible when this transaction is the outer one).
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for model in _organization_models():
            queryset = _rows_of(model, organization).order_by("pk")
            for field in _user_fields(model):
                user_ids.update(value for value in queryset.values_list(field, flat=True).distinct() if value)
            count = _write_model(archive, manifest, model, queryset)
            rows[_label(model)] = count
        member_ids = set(
            apps.get_model("accounts", "Membership")
            .objects.filter(organization=organization)
            .values_list("user_id", flat=True)
        )
        users = get_user_model().objects.filter(pk__in=user_ids | member_ids).order_by("pk")
        rows[_label(get_user_model())] = _write_model(archive, manifest, get_user_model(), users, first=True)
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return ArchiveSummary(organization=organization.slug, rows=rows)


class _ExactJSONEncoder(DjangoJSONEncoder):
    """Django's encoder cuts datetimes to milliseconds; a backup keeps every microsecond."""

    def default(self, o: object) -> object:
        if isinstance(o, datetime.datetime):
            text = o.isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text
        if isinstance(o, datetime.time):
            return o.isoformat()
        return super().default(o)


def _write_model(
    archive: zipfile.ZipFile, manifest: dict, model: type[models.Model], queryset, first: bool = False
) -> int:
    name = f"data/{_label(model)}.json"
    buffer = io.StringIO()
    serializers.serialize(
        "json",
        queryset.iterator(chunk_size=CHUNK),
        stream=buffer,
        use_natural_foreign_keys=True,
        indent=None,
        cls=_ExactJSONEncoder,
    )
    text = buffer.getvalue()
    archive.writestr(name, text)
    count = queryset.count()
    entry = {"model": _label(model), "file": name, "rows": count, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    if first:
        manifest["files"].insert(0, entry)
    else:
        manifest["files"].append(entry)
    return count


def _read_manifest(archive: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except KeyError:
        raise ArchiveInvalid("not a Cyclecount archive: manifest.json is missing") from None
    if manifest.get("format") != FORMAT:
        raise ArchiveInvalid(f"unsupported archive format {manifest.get('format')!r}; expected {FORMAT}")
    return manifest


def organization_import(*, path: Path) -> ArchiveSummary:
    """Restore an archive into an empty database (migrated to the same schema), all or nothing.

    Refuses a database that already holds an organization, an archive whose files do not match
    their checksums, and one written by a different schema (migrate first, or use a matching
    release). Restored rows keep their primary keys; sequences are moved past them.
    """
    if Organization.objects.exists():
        raise ArchiveInvalid("the database already holds an organization; restore into an empty database")
    with zipfile.ZipFile(path) as archive:
        manifest = _read_manifest(archive)
        differences = {
            app: (name, manifest["schema"].get(app))
            for app, name in _schema_state().items()
            if app in manifest["schema"] and manifest["schema"][app] != name
        }
        if differences:
            detail = ", ".join(
                f"{app}: archive {theirs}, database {ours}" for app, (ours, theirs) in differences.items()
            )
            raise ArchiveInvalid(f"the archive was written by another schema ({detail})")
        contents = []
        for entry in manifest["files"]:
            text = archive.read(entry["file"]).decode()
            if hashlib.sha256(text.encode()).hexdigest() != entry["sha256"]:
                raise ArchiveInvalid(f"{entry['file']} does not match its checksum; the archive is damaged")
            contents.append((entry, text))
    rows: dict[str, int] = {}
    touched: list[type[models.Model]] = []
    with transaction.atomic():
        with connection.constraint_checks_disabled():
            for entry, text in contents:
                count = 0
                for deserialized in serializers.deserialize("json", text, handle_forward_references=True):
                    deserialized.save()
                    count += 1
                if count != entry["rows"]:
                    raise ArchiveInvalid(f"{entry['file']} holds {count} rows; the manifest says {entry['rows']}")
                rows[entry["model"]] = count
                touched.append(apps.get_model(entry["model"]))
        connection.check_constraints(table_names=[model._meta.db_table for model in touched])
        _reset_sequences(touched)
    _sync_role_groups()
    return ArchiveSummary(organization=manifest["organization"]["slug"], rows=rows)


def _reset_sequences(models_: Iterable[type[models.Model]]) -> None:
    statements = connection.ops.sequence_reset_sql(_NoStyle(), list(models_))
    if statements:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def _sync_role_groups() -> None:
    from accounts.services import role_groups_sync

    role_groups_sync()


class _NoStyle:
    """`sequence_reset_sql` wants a colour style; plain text will do."""

    def __getattr__(self, name: str):
        return lambda text: text


def archive_default_path(slug: str) -> Path:
    return Path(settings.VAR_DIR) / f"{slug}-{timezone.now():%Y%m%dT%H%M%SZ}.cyclecount.zip"
