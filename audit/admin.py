"""The reason log, the event ledger and the webhooks in the admin.

The reason log and the ledger are read-only here (only services append to them). Webhook
subscriptions are created and changed through their services; state moves only through the
actions (resume, pause, disable), and the signing secret is shown once, never listed.
Deliveries and their attempts are read-only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import URLValidator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from accounts.scoping import OrganizationScopedAdminMixin, request_organization
from audit import webhooks
from audit.models import (
    DOMAIN_EVENT_TYPES,
    AuditLog,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from audit.services import (
    webhook_subscription_create,
    webhook_subscription_disable,
    webhook_subscription_pause,
    webhook_subscription_resume,
    webhook_subscription_secret_rotate,
    webhook_subscription_test_send,
    webhook_subscription_update,
)


class ReadOnlyAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class TagFilter(admin.SimpleListFilter):
    """Tags present in the user's organization's log.

    Not Django's AllValuesFieldListFilter: it would list every organization's tags.
    """

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        tags = model_admin.get_queryset(request).order_by("tag").values_list("tag", flat=True).distinct()
        return [(tag, tag) for tag in tags]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(tag=self.value()) if self.value() else queryset


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tag", "subject", "facility", "actor", "delta", "approved_by", "reason_excerpt"]
    list_filter = [TagFilter, ("facility", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=object_id", "reason"]
    list_select_related = ["actor", "facility"]
    fields = [
        "created_at", "tag", "object_type", "object_id", "facility", "actor", "delta", "approved_by", "reason", "data",
    ]  # fmt: skip

    @admin.display(description="object", ordering="object_type")
    def subject(self, log: AuditLog) -> str:
        return f"{log.object_type}:{log.object_id}" if log.object_type else "—"

    @admin.display(description="reason")
    def reason_excerpt(self, log: AuditLog) -> str:
        return log.reason if len(log.reason) <= 80 else f"{log.reason[:79]}…"


class EventDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["subscription", "state", "attempts", "last_status", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("subscription")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "type", "version", "event_id", "dispatched_at", "subscriber_failures"]
    list_filter = ["type", ("dispatched_at", admin.EmptyFieldListFilter)]
    search_fields = ["=event_id"]
    fields = ["event_id", "type", "version", "occurred_at", "dispatched_at", "payload", "subscriber_errors"]
    inlines = [EventDeliveryInline]

    @admin.display(description="failed subscribers")
    def subscriber_failures(self, event: Event) -> int:
        return len(event.subscriber_errors)


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500,
        assume_scheme="https",
        validators=[URLValidator(schemes=["https", "http"])],
        help_text="Receives a signed POST per event (https strongly recommended).",
    )
    event_types = forms.MultipleChoiceField(
        choices=[(value, value) for value in DOMAIN_EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event type.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ["url", "description", "event_types"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(OrganizationScopedAdminMixin, admin.ModelAdmin):
    form = WebhookSubscriptionForm
    # Never the secret: lists and the change page show it masked at most.
    list_display = ["__str__", "url", "event_types_column", "state", "consecutive_failures", "created_by", "created_at"]
    list_filter = ["state"]
    search_fields = ["url", "description"]
    list_select_related = ["created_by"]
    actions = ["resume_selected", "pause_selected", "disable_selected", "send_test_event", "rotate_secret"]
    STATUS_FIELDS = [
        "signing_secret", "state", "paused_reason", "paused_at", "consecutive_failures", "created_by", "created_at",
        "updated_at",
    ]  # fmt: skip

    def get_fields(self, request: HttpRequest, obj: WebhookSubscription | None = None) -> list[str]:
        editable = ["url", "description", "event_types"]
        return editable if obj is None else [*editable, *self.STATUS_FIELDS]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookSubscription | None = None) -> list[str]:
        return [] if obj is None else self.STATUS_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deliveries and attempts refer to it; disable it instead.
        return False

    @admin.display(description="event types")
    def event_types_column(self, subscription: WebhookSubscription) -> str:
        return ", ".join(subscription.event_types) or "all"

    @admin.display(description="signing secret")
    def signing_secret(self, subscription: WebhookSubscription) -> str:
        return webhooks.secret_masked(subscription.secret)

    def save_model(self, request: HttpRequest, obj: WebhookSubscription, form: forms.ModelForm, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in ("url", "description", "event_types")}
        if change:
            saved = webhook_subscription_update(subscription=obj, actor=request.user, **values)
        else:
            organization = request_organization(request)
            if organization is None:
                raise PermissionDenied
            saved = webhook_subscription_create(organization_id=organization.pk, actor=request.user, **values)
        for field in saved._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def response_add(self, request: HttpRequest, obj: WebhookSubscription, post_url_continue: Any = None) -> Any:
        if "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        return self._show_secrets(request, [obj], "Subscription created")

    def _show_secrets(self, request: HttpRequest, subscriptions: list[WebhookSubscription], title: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "subscriptions": subscriptions,
        }
        # Admin views are never_cache: the page with the secret is not stored by the browser.
        return TemplateResponse(request, "admin/audit/webhooksubscription/secret.html", context)

    @admin.action(description="Resume (re-queue held, failed and abandoned deliveries)", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        requeued = 0
        subscriptions = list(queryset.order_by("pk"))
        for subscription in subscriptions:
            requeued += len(webhook_subscription_resume(subscription=subscription, actor=request.user)[1])
        message = f"Resumed {len(subscriptions)} subscription(s); re-queued {requeued} delivery(ies)."
        self.message_user(request, message, messages.SUCCESS)

    @admin.action(description="Pause (hold deliveries until resumed)", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        subscriptions = list(queryset.order_by("pk"))
        for subscription in subscriptions:
            webhook_subscription_pause(subscription=subscription, actor=request.user)
        self.message_user(request, f"Paused {len(subscriptions)} subscription(s).", messages.SUCCESS)

    @admin.action(description="Disable (no deliveries for new events)", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        subscriptions = list(queryset.order_by("pk"))
        for subscription in subscriptions:
            webhook_subscription_disable(subscription=subscription, actor=request.user)
        self.message_user(request, f"Disabled {len(subscriptions)} subscription(s).", messages.SUCCESS)

    @admin.action(description="Send test event", permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet) -> None:
        subscriptions = list(queryset.order_by("pk"))
        for subscription in subscriptions:
            webhook_subscription_test_send(subscription=subscription, actor=request.user)
        self.message_user(
            request,
            f"Queued a test event to {len(subscriptions)} subscription(s); see its delivery under Webhook deliveries.",
            messages.SUCCESS,
        )

    @admin.action(description="Rotate signing secret (shown once)", permissions=["change"])
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        rotated = [
            webhook_subscription_secret_rotate(subscription=subscription, actor=request.user)
            for subscription in queryset.order_by("pk")
        ]
        return self._show_secrets(request, rotated, "New signing secrets")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ["attempted_at", "succeeded", "status_code", "latency_ms", "response_excerpt", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at", "event_type", "event_column", "subscription", "state", "attempts", "last_status",
        "next_attempt_at", "delivered_at",
    ]  # fmt: skip
    list_filter = ["state", ("subscription", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=event__event_id", "subscription__url"]
    list_select_related = ["event", "subscription"]
    fields = [
        "event_column", "event_type", "subscription", "state", "attempts", "next_attempt_at", "leased_until",
        "last_status", "last_error", "delivered_at", "created_at",
    ]  # fmt: skip
    readonly_fields = ["event_column", "event_type"]
    inlines = [WebhookAttemptInline]

    @admin.display(description="type", ordering="event__type")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description="event id")
    def event_column(self, delivery: WebhookDelivery) -> str:
        return str(delivery.event.event_id)
