from __future__ import annotations

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from accounts.roles import Role


class Organization(models.Model):
    """The tenant: every domain row belongs to exactly one organization."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A person's place in one organization and the role that decides what they may do.

    A user belongs to one organization: the request's organization is derived from it, so no
    request can pick a tenant the user is not in.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords()

    class Meta:
        ordering = ["organization", "user__username"]
        indexes = [models.Index(fields=["organization", "role"])]

    def __str__(self) -> str:
        return f"{self.user} · {self.get_role_display()} · {self.organization}"


class OrganizationScopedQuerySet(models.QuerySet):
    def for_organization(self, organization: Organization | None) -> OrganizationScopedQuerySet:
        """The one way to scope rows to a tenant; no organization means no rows."""
        if organization is None:
            return self.none()
        return self.filter(organization=organization)


class OrganizationOwned(models.Model):
    """Abstract base for every domain row: it carries its organization."""

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")

    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        abstract = True


class EditToken(models.Model):
    """A person's personal edit token for X-Edit-Token; only its SHA-256 is stored."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="edit_token")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"edit token of {self.user} (issued {self.created_at:%Y-%m-%d})"
