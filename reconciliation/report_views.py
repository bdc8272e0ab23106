"""The managers' reports: the dashboard tile on the admin index, and `/inventory/variances`.

Server-rendered, no scripts: the charts are SVG drawn here (bar geometry) and in the templates.
Managers, finance and admins only (others: 403); every figure is the user's organization's
(`accounts.scoping.request_organization`). The reads are `reconciliation.reports`; each page runs
a fixed number of queries whatever the data's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from import_export.formats.base_formats import CSV, XLSX

from accounts.models import Organization
from accounts.scoping import request_organization
from accounts.selectors import role_for_user
from inventory.models import AbcClass
from reconciliation import reports
from reconciliation.models import Variance

LOGIN_URL = "/accounts/login/"
PAGE_SIZE = 50
DEFAULT_REPORT_DAYS = 30
EXPORT_FORMATS = {"csv": CSV, "xlsx": XLSX}


def _reporting_organization(request: HttpRequest) -> Organization:
    """The user's organization, for managers, finance and admins; 403 for everyone else."""
    if role_for_user(request.user) not in reports.REPORT_ROLES:
        raise PermissionDenied("Only managers, finance and admins see the reports.")
    organization = request_organization(request)
    if organization is None:
        raise PermissionDenied("You belong to no organization.")
    return organization


# --- Display helpers --------------------------------------------------------------------------


def money_text(value: Decimal | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = f"${abs(value):,.2f}"
    if value < 0:
        return f"−{text}"
    return f"+{text}" if signed and value > 0 else text


def quantity_text(value: Decimal | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    text = format(abs(value).normalize(), "f")
    if value < 0:
        return f"−{text}"
    return f"+{text}" if signed and value > 0 else text


def share_text(value: Decimal | None) -> str:
    """0.9832 → "98.3%"; "–" when undefined."""
    return "–" if value is None else f"{value * 100:.1f}%"


# --- SVG charts (geometry here, markup in the templates) -----------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    negative: bool
    title: str


@dataclass(frozen=True)
class Chart:
    """Signed vertical bars around a zero line: a day's (week's) net value up or down."""

    width: int
    height: int
    zero_y: float
    bars: list[Bar]
    top_label: str
    bottom_label: str
    first_label: str
    last_label: str


def signed_bar_chart(
    values: Sequence[Decimal], titles: Sequence[str], *, width: int = 300, height: int = 80, labels: tuple[str, str]
) -> Chart:
    """Bars for `values` (one per period), scaled to the largest magnitude, negative ones below zero."""
    high = max([value for value in values if value > 0], default=Decimal("0"))
    low = min([value for value in values if value < 0], default=Decimal("0"))
    span = (high - low) or Decimal("1")
    plot_top, plot_height = 4.0, height - 8.0
    zero_y = plot_top + float(high / span) * plot_height
    slot = width / max(len(values), 1)
    bars = []
    for index, (value, title) in enumerate(zip(values, titles, strict=True)):
        length = float(abs(value) / span) * plot_height
        if value != 0:
            length = max(length, 1.0)  # a small difference stays visible
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.1, 2),
                y=round(zero_y - length if value >= 0 else zero_y, 2),
                width=round(slot * 0.8, 2),
                height=round(length, 2),
                negative=value < 0,
                title=title,
            )
        )
    return Chart(
        width=width,
        height=height,
        zero_y=round(zero_y, 2),
        bars=bars,
        top_label=money_text(high) if high else "",
        bottom_label=money_text(low) if low else "",
        first_label=labels[0],
        last_label=labels[1],
    )


@dataclass(frozen=True)
class HorizontalBar:
    y: float
    width: float
    label: str
    value_label: str


@dataclass(frozen=True)
class HorizontalChart:
    width: int
    height: int
    label_width: int
    bar_height: int
    bars: list[HorizontalBar]


def horizontal_bar_chart(
    rows: Sequence[tuple[str, Decimal, str]], *, width: int = 420, label_width: int = 150, bar_height: int = 18
) -> HorizontalChart:
    """One bar per (label, value, value label), longest first as given."""
    largest = max((value for _, value, _ in rows), default=Decimal("0")) or Decimal("1")
    room = width - label_width - 90
    bars = [
        HorizontalBar(
            y=index * (bar_height + 6),
            width=round(max(float(value / largest) * room, 1.0), 2),
            label=label,
            value_label=value_label,
        )
        for index, (label, value, value_label) in enumerate(rows)
    ]
    height = max(len(rows), 1) * (bar_height + 6)
    return HorizontalChart(width=width, height=height, label_width=label_width, bar_height=bar_height, bars=bars)


# --- The dashboard tile ---------------------------------------------------------------------


def _figures_text(figures: reports.Figures) -> dict[str, Any]:
    return {
        "lines": figures.lines,
        "variances": figures.variances,
        "net": money_text(figures.net_value, signed=True),
        "absolute": money_text(figures.absolute_value),
        "accuracy": share_text(figures.record_accuracy),
        "value_accuracy": share_text(figures.value_accuracy),
    }


def tile_cache_seconds() -> int:
    return int(getattr(settings, "REPORT_TILE_CACHE_SECONDS", 300))


def dashboard_figures_cached(*, organization: Organization) -> reports.Dashboard:
    """The organization's dashboard figures, computed at most every `REPORT_TILE_CACHE_SECONDS`
    (default 300; 0 turns the cache off). The tile says when they were computed. A 30-day view
    moves slowly, and the index page is every staff member's landing page."""
    seconds = tile_cache_seconds()
    key = f"reports:dashboard:{organization.pk}"
    dashboard = cache.get(key) if seconds else None
    if dashboard is None:
        dashboard = reports.dashboard_figures(organization=organization)
        if seconds:
            cache.set(key, dashboard, seconds)
    return dashboard


def dashboard_tile(*, organization: Organization) -> dict[str, Any]:
    """The tile's context: the dashboard figures as shown, and a daily net-value chart per zone
    (days in the zone's facility's time zone)."""
    dashboard = dashboard_figures_cached(organization=organization)
    zone = reports.report_time_zone(facilities=list({entry.zone.facility for entry in dashboard.zones}))
    zones = []
    for entry in dashboard.zones:
        titles = [
            f"{day:%b %d}: net {money_text(net, signed=True)}, |value| {money_text(absolute)}"
            for day, net, absolute in zip(entry.days, entry.daily_net, entry.daily_absolute, strict=True)
        ]
        chart = signed_bar_chart(
            entry.daily_net, titles, width=186, height=44, labels=(f"{entry.days[0]:%b %d}", f"{entry.days[-1]:%b %d}")
        )
        zones.append({"zone": entry.zone, **_figures_text(entry.figures), "chart": chart})
    return {
        "dashboard": dashboard,
        # Preformatted: the template's date filter would turn them back into UTC.
        "since": f"{dashboard.since.astimezone(zone):%b %d}",
        "until": f"{dashboard.until.astimezone(zone):%b %d, %Y %H:%M}",
        "time_zone": zone.key,
        "refresh_minutes": round(tile_cache_seconds() / 60),
        "tolerance": dashboard.tolerance_percent,
        "totals": _figures_text(dashboard.totals),
        "coverage": share_text(dashboard.coverage),
        "stocked": dashboard.stocked,
        "stocked_counted": dashboard.stocked_counted,
        "approvals_waiting": dashboard.approvals_waiting,
        "approvals_waiting_value": money_text(dashboard.approvals_waiting_value),
        "push_failures": dashboard.push_failures,
        "parity_drifts": dashboard.parity_drifts,
        "zones": zones,
        "top_items": [
            {
                "item": entry.item,
                "variances": entry.variances,
                "net": money_text(entry.net_value, signed=True),
                "absolute": money_text(entry.absolute_value),
            }
            for entry in dashboard.top_items
        ],
    }


def admin_index(request: HttpRequest) -> TemplateResponse:
    """The admin index with the reporting tile for managers, finance and admins (others see the index)."""
    extra: dict[str, Any] = {}
    organization = request_organization(request)
    if organization is not None and role_for_user(request.user) in reports.REPORT_ROLES:
        extra["report_tile"] = dashboard_tile(organization=organization)
    return admin.site.index(request, extra_context=extra)


# The admin's own wrapper: login redirect to the admin login, never cached, CSRF like the admin.
admin_index_view = admin.site.admin_view(admin_index)


# --- The variance report --------------------------------------------------------------------


def _choices(pairs: Sequence[tuple[str, str]], empty: str = "any") -> list[tuple[str, str]]:
    return [("", empty), *pairs]


SORT_CHOICES = [(key, key) for name in reports.SORTS for key in (name, f"-{name}")]


class VarianceFilterForm(forms.Form):
    """The report's query string; the choices are the organization's."""

    facility = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    zone = forms.TypedChoiceField(required=False, coerce=int, empty_value=None)
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    abc = forms.ChoiceField(required=False, label="ABC class", choices=_choices(AbcClass.choices))
    root_cause = forms.ChoiceField(required=False)
    decision = forms.ChoiceField(required=False, choices=_choices(reports.Decision.CHOICES))
    state = forms.ChoiceField(required=False, choices=_choices(reports.STATE_CHOICES))
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)
    page = forms.IntegerField(required=False, min_value=1)

    def __init__(self, data: Any, *, options: dict[str, list[Any]]) -> None:
        super().__init__(data)
        self.fields["facility"].choices = _choices([(str(f.pk), f.code) for f in options["facilities"]], "all")
        self.fields["zone"].choices = _choices(
            [(str(zone.pk), f"{zone.facility.code} · {zone.code}") for zone in options["zones"]], "all"
        )
        self.fields["root_cause"].choices = _choices([(cause.code, cause.label) for cause in options["root_causes"]])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("date_from") and cleaned.get("date_to") and cleaned["date_from"] > cleaned["date_to"]:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned


@dataclass(frozen=True)
class ReportQuery:
    filters: reports.VarianceFilters
    sort: str
    page: int
    time_zone_note: str


def _report_query(request: HttpRequest, options: dict[str, list[Any]]) -> tuple[VarianceFilterForm, ReportQuery | None]:
    form = VarianceFilterForm(request.GET, options=options)
    if not form.is_valid():
        return form, None
    values = form.cleaned_data
    facilities = options["facilities"]
    zone = reports.report_time_zone(facilities=facilities, facility_id=values["facility"])
    today = timezone.now().astimezone(zone).date()
    date_to = values["date_to"] or today
    date_from = values["date_from"] or (date_to - timedelta(days=DEFAULT_REPORT_DAYS - 1))
    if date_from > date_to:
        date_from = date_to
    filters = reports.VarianceFilters(
        date_from=date_from,
        date_to=date_to,
        time_zone=zone,
        facility_id=values["facility"],
        zone_id=values["zone"],
        abc_class=values["abc"],
        root_cause=values["root_cause"],
        decision=values["decision"],
        state=values["state"],
    )
    if values["facility"] is not None:
        note = f"Dates are days in {zone.key} (the facility's time zone)."
    elif len({facility.time_zone for facility in facilities}) > 1:
        note = "Dates are UTC days (the facilities are in different time zones; pick one for its local days)."
    else:
        note = f"Dates are days in {zone.key}."
    return form, ReportQuery(
        filters=filters, sort=values["sort"] or reports.DEFAULT_SORT, page=values["page"] or 1, time_zone_note=note
    )


@dataclass(frozen=True)
class ReportRow:
    """One variance as the table shows it."""

    variance: Variance

    @property
    def proposal(self) -> Any:
        return getattr(self.variance, "proposal", None) if self.decision != reports.Decision.NONE else None

    @property
    def decision(self) -> str:
        return reports.decision_of(self.variance)

    @property
    def root_cause(self) -> Any:
        return reports.root_cause_of(self.variance)

    @property
    def book(self) -> str:
        return quantity_text(self.variance.book_at_count)

    @property
    def counted(self) -> str:
        return quantity_text(self.variance.counted_quantity)

    @property
    def units(self) -> str:
        return quantity_text(self.variance.variance_units, signed=True)

    @property
    def percent(self) -> str:
        value = self.variance.variance_percent
        return "n/a" if value is None else f"{'+' if value > 0 else ''}{value:.2f}%".replace("-", "−")

    @property
    def value(self) -> str:
        return money_text(self.variance.variance_value, signed=True)

    @property
    def trace_url(self) -> str:
        proposal = self.proposal
        return f"/trace/?{urlencode({'proposal': proposal.pk})}" if proposal else ""


def _query_string(request: HttpRequest, **changes: Any) -> str:
    params = request.GET.copy()
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    return params.urlencode()


def _sort_links(request: HttpRequest, current: str) -> dict[str, dict[str, str]]:
    """For each sortable column: the link (toggling direction when it is the current sort) and an arrow."""
    links = {}
    for name in reports.SORTS:
        active = current.removeprefix("-") == name
        descending = current.startswith("-")
        target = (name if descending else f"-{name}") if active else f"-{name}"
        links[name] = {
            "query": _query_string(request, sort=target, page=None),
            "arrow": ("▼" if descending else "▲") if active else "",
        }
    return links


@never_cache
@login_required(login_url=LOGIN_URL)
@require_GET
def variance_report(request: HttpRequest) -> HttpResponse:
    """`/inventory/variances`: the organization's current variances, filtered, sorted, charted, paged."""
    organization = _reporting_organization(request)
    options = reports.variance_filter_options(organization=organization)
    form, query = _report_query(request, options)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Variance report",
        "form": form,
        "organization": organization,
    }
    if query is None:
        return render(request, "reconciliation/variance_report.html", context, status=400)
    variances = reports.variance_report(organization=organization, filters=query.filters)
    with reports.report_session():
        tolerance = reports.tolerance_percent(organization=organization)
        periods, totals = reports.report_by_period(variances, filters=query.filters, tolerance=tolerance)
        pages = max(math.ceil(totals.lines / PAGE_SIZE), 1)
        page = min(query.page, pages)
        rows = reports.report_page(variances, sort=query.sort, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        causes = reports.report_by_root_cause(variances, root_causes=options["root_causes"])
    bucket = reports.period_bucket(query.filters)
    period_chart = signed_bar_chart(
        [period.net_value for period in periods],
        [
            f"{_period_label(period.start, bucket)}: {period.lines} lines, {period.variances} variances, "
            f"net {money_text(period.net_value, signed=True)}, |value| {money_text(period.absolute_value)}"
            for period in periods
        ],
        width=640,
        height=120,
        labels=(_period_label(periods[0].start, bucket), _period_label(periods[-1].start, bucket)),
    )
    cause_chart = horizontal_bar_chart(
        [(c.label, c.absolute_value, f"{money_text(c.absolute_value)} · {c.variances}") for c in causes]
    )
    context.update(
        {
            "query": query,
            "filters": query.filters,
            "tolerance": tolerance,
            "totals": totals,
            "totals_text": {
                "net": money_text(totals.net_value, signed=True),
                "absolute": money_text(totals.absolute_value),
                "book": money_text(totals.book_value),
                "accuracy": share_text(totals.record_accuracy),
                "value_accuracy": share_text(totals.value_accuracy),
            },
            "rows": [ReportRow(variance) for variance in rows],
            "page": page,
            "pages": pages,
            "previous_query": _query_string(request, page=page - 1) if page > 1 else "",
            "next_query": _query_string(request, page=page + 1) if page < pages else "",
            "sort_links": _sort_links(request, query.sort),
            "bucket": bucket,
            "period_chart": period_chart,
            "causes": causes,
            "cause_chart": cause_chart,
            "export_query": _query_string(request, page=None, sort=None),
        }
    )
    return render(request, "reconciliation/variance_report.html", context)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_GET
def variance_associates(request: HttpRequest) -> HttpResponse:
    """`/inventory/variances/associates`: per associate, the report's lines they counted (same
    filters) and the share a recount overturned. A page of its own: it reads every tally behind
    the selection, which the report's default view does not need to."""
    organization = _reporting_organization(request)
    options = reports.variance_filter_options(organization=organization)
    form, query = _report_query(request, options)
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Counting quality per associate",
        "form": form,
        "organization": organization,
    }
    if query is None:
        return render(request, "reconciliation/variance_associates.html", context, status=400)
    variances = reports.variance_report(organization=organization, filters=query.filters)
    with reports.report_session():
        quality = reports.associate_quality(variances, organization=organization)
    context.update(
        {
            "query": query,
            "filters": query.filters,
            "associates": [
                {
                    "username": entry.username,
                    "lines": entry.lines_counted,
                    "overturned": entry.overturned,
                    "share": share_text(entry.overturned_share),
                }
                for entry in quality
            ],
            "report_query": _query_string(request, page=None),
        }
    )
    return render(request, "reconciliation/variance_associates.html", context)


def _period_label(start: date, bucket: str) -> str:
    if bucket == "month":
        return f"{start:%b %Y}"
    if bucket == "week":
        return f"week of {start:%b %d, %Y}"
    return f"{start:%b %d}"


def export_max_rows() -> int:
    return getattr(settings, "REPORT_EXPORT_MAX_ROWS", 100_000)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_GET
def variance_report_export(request: HttpRequest, file_format: str) -> HttpResponse:
    """The report's rows (all pages, same filters) as CSV or XLSX, through `VarianceReportResource`."""
    organization = _reporting_organization(request)
    format_class = EXPORT_FORMATS.get(file_format)
    if format_class is None or not format_class.is_available():
        return HttpResponse(f"Unknown or unavailable format {file_format!r}.", status=404, content_type="text/plain")
    form, query = _report_query(request, reports.variance_filter_options(organization=organization))
    if query is None:
        return HttpResponse(form.errors.as_text(), status=400, content_type="text/plain")
    variances = reports.variance_report(organization=organization, filters=query.filters)
    rows = variances.count()
    if rows > export_max_rows():
        message = (
            f"{rows} rows are more than {export_max_rows()} for a download; narrow the filters, or request "
            "an export (Exports) that is built in the background."
        )
        return HttpResponse(message, status=400, content_type="text/plain")
    dataset = reports.VarianceReportResource().export(queryset=reports.variance_export_rows(variances))
    export_format = format_class()
    response = HttpResponse(export_format.export_data(dataset), content_type=export_format.get_content_type())
    name = f"variances-{query.filters.date_from:%Y%m%d}-{query.filters.date_to:%Y%m%d}.{export_format.get_extension()}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
