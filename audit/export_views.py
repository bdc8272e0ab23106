"""`/inventory/exports`: request an export of closed counts or approved adjustments, see the history, download.

Managers, finance and admins only (others 403); jobs of another organization answer 404. The
request goes through `export_job_request`; the file is built by a Celery task and served here
while it is retained.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import Organization
from accounts.scoping import request_organization
from accounts.selectors import role_for_user
from audit.export_models import ExportFormat, ExportJob, ExportKind
from audit.exports import (
    FORMATS,
    ExportInvalid,
    export_downloadable,
    export_file_path,
    export_job_history,
    export_job_request,
    export_retention_days,
)
from inventory.models import Facility
from reconciliation.reports import REPORT_ROLES

LOGIN_URL = "/accounts/login/"


def _exporting_organization(request: HttpRequest) -> Organization:
    if role_for_user(request.user) not in REPORT_ROLES:
        raise PermissionDenied("Only managers, finance and admins export.")
    organization = request_organization(request)
    if organization is None:
        raise PermissionDenied("You belong to no organization.")
    return organization


class ExportRequestForm(forms.Form):
    kind = forms.ChoiceField(choices=ExportKind.choices, label="What")
    facility = forms.ModelChoiceField(queryset=Facility.objects.none(), empty_label=None)
    date_from = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    file_format = forms.ChoiceField(label="Format", choices=ExportFormat.choices)

    def __init__(self, *args: Any, organization: Organization, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["facility"].queryset = Facility.objects.for_organization(organization).order_by("code")
        self.fields["file_format"].choices = [
            (value, label) for value, label in ExportFormat.choices if FORMATS[value].is_available()
        ]


@never_cache
@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
def export_jobs(request: HttpRequest) -> HttpResponse:
    """The request form and the history; POST records a request and redirects back."""
    organization = _exporting_organization(request)
    status = 200
    if request.method == "POST":
        form = ExportRequestForm(request.POST, organization=organization)
        if form.is_valid():
            values = form.cleaned_data
            try:
                job = export_job_request(
                    organization=organization,
                    actor=request.user,
                    kind=values["kind"],
                    facility=values["facility"],
                    date_from=values["date_from"],
                    date_to=values["date_to"],
                    file_format=values["file_format"],
                )
            except ExportInvalid as error:
                form.add_error(error.field if error.field in form.fields else None, str(error))
            else:
                messages.success(request, f"Export {job.pk} requested; it is built in the background.")
                return redirect("reports:exports")
        status = 400
    else:
        today = timezone.localdate()
        form = ExportRequestForm(
            organization=organization,
            initial={"date_from": today - timedelta(days=29), "date_to": today, "kind": ExportKind.CLOSED_COUNTS},
        )
    now = timezone.now()
    history = export_job_history(organization=organization)
    jobs = [{"job": job, "downloadable": export_downloadable(job, now=now)} for job in history]
    context = {
        **admin.site.each_context(request),
        "title": "Exports",
        "form": form,
        "jobs": jobs,
        "retention_days": export_retention_days(),
    }
    return render(request, "reconciliation/export_jobs.html", context, status=status)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_GET
def export_job_download(request: HttpRequest, job_id: int) -> HttpResponse:
    """The job's file while it is retained; 404 for another organization's job or one without a file."""
    organization = _exporting_organization(request)
    job = get_object_or_404(ExportJob.objects.for_organization(organization), pk=job_id)
    if not export_downloadable(job):
        raise Http404("This export has no file (not built yet, failed, or past its retention).")
    path = export_file_path(job)
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
