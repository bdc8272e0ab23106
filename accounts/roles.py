"""Roles and what each may do, mapped onto Django groups so the admin shows only that."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    ASSOCIATE = "associate", "Associate"
    PLANNER = "planner", "Planner"
    MANAGER = "manager", "Manager"
    FINANCE = "finance", "Finance"
    ADMIN = "admin", "Administrator"


# Roles that work in the Django admin; associates use the count views and the API only.
STAFF_ROLES = frozenset({Role.PLANNER, Role.MANAGER, Role.FINANCE, Role.ADMIN})

_MIRROR_MODELS = ("facility", "zone", "location", "item", "itembarcode", "inventorybalance")
_VIEW_MIRROR = tuple(f"inventory.view_{model}" for model in _MIRROR_MODELS)
_COUNT_MODELS = ("countrun", "countrequest", "countsession", "countevent", "countline", "facilitycountsettings",
                 "columnmapping")  # fmt: skip
_VIEW_COUNTS = tuple(f"counts.view_{model}" for model in _COUNT_MODELS)
# Commanding runs (start, cancel) and keeping saved import mappings: planners and managers.
_PLAN_COUNTS = ("counts.change_countrun", "counts.add_columnmapping", "counts.change_columnmapping",
                "counts.delete_columnmapping")  # fmt: skip
_SET_PREFERENCES = ("counts.add_facilitycountsettings", "counts.change_facilitycountsettings")
# The approval surface (admin and /proposed-actions/): managers, finance and admins. The change
# permission only unlocks the admin's bulk actions; the proposal form itself stays read-only.
_REVIEW_PROPOSALS = ("approvals.view_proposedaction", "approvals.change_proposedaction", "approvals.view_approval",
                     "reconciliation.view_variance", "reconciliation.view_guardrail",
                     "reconciliation.view_rootcause")  # fmt: skip
# The organization's rules: guardrails (versioned by reconciliation.guardrails) and root causes.
_EDIT_RULES = ("reconciliation.change_guardrail", "reconciliation.add_rootcause", "reconciliation.change_rootcause")
# The way to the ERP: the outbox, its batches, parity drifts. Managers retry what a person must
# fix, resolve drifts and correct backend mappings; admins also configure connections.
_VIEW_PUSHES = ("adapters.view_pendingpush", "adapters.view_pushbatch", "adapters.view_paritydrift",
                "adapters.view_backendconnection", "adapters.view_externalrecord")  # fmt: skip
_FIX_PUSHES = ("adapters.change_pushbatch", "adapters.change_paritydrift", "adapters.add_externalrecord",
               "adapters.change_externalrecord")  # fmt: skip
# Shops without an API upload the ERP's on-hand as a file, and keep its column mappings.
_UPLOAD_ONHAND = ("adapters.view_onhandsnapshot", "adapters.add_onhandsnapshot", "adapters.view_onhandcolumnmapping",
                  "adapters.add_onhandcolumnmapping", "adapters.change_onhandcolumnmapping",
                  "adapters.delete_onhandcolumnmapping")  # fmt: skip
# Finance imports exported adjustment files into the ERP and says so, and uploads on-hand files;
# managers may too.
_IMPORT_FILES = ("adapters.mark_imported_pushbatch", *_UPLOAD_ONHAND)
_CONFIGURE_BACKENDS = ("adapters.add_backendconnection", "adapters.change_backendconnection")

# The reason log, the event ledger and webhook deliveries: read by those who answer for decisions;
# subscriptions are configured by admins.
_VIEW_AUDIT = ("audit.view_auditlog", "audit.view_event", "audit.view_webhooksubscription",
               "audit.view_webhookdelivery", "audit.view_webhookattempt")  # fmt: skip
_CONFIGURE_WEBHOOKS = ("audit.add_webhooksubscription", "audit.change_webhooksubscription")
# Export jobs (closed counts, approved adjustments) and their history: managers, finance and admins.
_EXPORT = ("audit.view_exportjob", "audit.add_exportjob")

# Permission codenames ("app_label.codename") granted to each role's group. Later issues add
# their models here; the group is re-synced on every migrate.
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Role.ASSOCIATE: _VIEW_MIRROR,
    Role.PLANNER: (*_VIEW_MIRROR, *_VIEW_COUNTS, *_PLAN_COUNTS),
    Role.MANAGER: (
        *_VIEW_MIRROR,
        *_VIEW_COUNTS,
        *_PLAN_COUNTS,
        *_SET_PREFERENCES,
        "accounts.view_membership",
        *_REVIEW_PROPOSALS,
        *_VIEW_PUSHES,
        *_FIX_PUSHES,
        *_IMPORT_FILES,
        *_VIEW_AUDIT,
        *_EXPORT,
    ),
    Role.FINANCE: (
        *_VIEW_MIRROR,
        *_VIEW_COUNTS,
        *_REVIEW_PROPOSALS,
        *_VIEW_PUSHES,
        *_IMPORT_FILES,
        *_VIEW_AUDIT,
        *_EXPORT,
    ),
    Role.ADMIN: (
        *_VIEW_MIRROR,
        *_VIEW_COUNTS,
        *_PLAN_COUNTS,
        *_SET_PREFERENCES,
        *_REVIEW_PROPOSALS,
        *_EDIT_RULES,
        *_VIEW_PUSHES,
        *_FIX_PUSHES,
        *_IMPORT_FILES,
        *_CONFIGURE_BACKENDS,
        *_VIEW_AUDIT,
        *_CONFIGURE_WEBHOOKS,
        *_EXPORT,
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "django_celery_beat.view_crontabschedule",
        # The mirror is written by sync; an admin may only correct a facility's name or time zone.
        "inventory.change_facility",
        "accounts.view_organization",
        "accounts.view_membership",
        "accounts.add_membership",
        "accounts.change_membership",
        "accounts.delete_membership",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
    ),
}


def group_name(role: str) -> str:
    return f"role:{role}"
