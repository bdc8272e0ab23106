"""The trace page at /trace/ and its CSV export at /trace/export.csv (see audit.trace).

Server-rendered, without scripts, for managers, finance and admins: a search form (one id at
a time), then each chain's links as readable sections, times in the facility's zone. The
export writes one row per scan and records who exported what in the reason log.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.roles import Role
from accounts.scoping import request_organization
from accounts.selectors import role_for_user
from audit import trace
from audit.apis import trace_input
from audit.services import audit_log_write

LOGIN_URL = "/accounts/login/"
AUDITOR_ROLES = (Role.MANAGER, Role.FINANCE, Role.ADMIN)
EXPORT_TAG = "export_generated"


def _auditor_required(request: HttpRequest) -> None:
    if role_for_user(request.user) not in AUDITOR_ROLES:
        raise PermissionDenied("Only managers, finance and admins trace adjustments.")


def _errors_text(errors: dict[str, Any]) -> dict[str, str]:
    return {name: " ".join(str(message) for message in messages) for name, messages in errors.items()}


@never_cache
@login_required(login_url=LOGIN_URL)
@require_GET
def trace_page(request: HttpRequest) -> HttpResponse:
    """`/trace/?record=|batch=|proposal=|line=`: the search form and, given an id, its chains.

    400 with the problem for a bad query, 404 (same page, "nothing found") for an unknown id or
    another organization's.
    """
    _auditor_required(request)
    context: dict[str, Any] = {
        "labels": trace.PARAMETER_LABELS,
        "values": {name: request.GET.get(name, "") for name in trace.TRACE_PARAMETERS},
        "organization": request_organization(request),
    }
    if not any(name in request.GET for name in trace.TRACE_PARAMETERS):
        return render(request, "audit/trace.html", context)
    given = trace_input(request.GET)
    if not given.is_valid():
        context["errors"] = _errors_text(given.errors)
        return render(request, "audit/trace.html", context, status=400)
    query = given.validated_data["query"]
    context["query"] = query
    try:
        found = trace.trace_get(organization=context["organization"], query=query, page=given.validated_data["page"])
    except trace.TraceNotFound:
        context["not_found"] = True
        return render(request, "audit/trace.html", context, status=404)
    context["trace"] = found
    context["export_query"] = query.as_params()
    return render(request, "audit/trace.html", context)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_GET
def trace_export(request: HttpRequest) -> HttpResponse:
    """`/trace/export.csv?…`: every chain of the trace (all pages), one row per scan.

    The export is recorded in the reason log (`export_generated`: who, the query, how many
    chains and rows), written once the file is built: an export that failed leaves no row.
    """
    _auditor_required(request)
    given = trace_input(request.GET)
    if not given.is_valid():
        detail = "; ".join(f"{name}: {message}" for name, message in _errors_text(given.errors).items())
        return HttpResponse(detail, status=400, content_type="text/plain; charset=utf-8")
    query = given.validated_data["query"]
    organization = request_organization(request)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(trace.CSV_HEADER)
    rows = chains = 0
    try:
        for page in trace.trace_pages(organization=organization, query=query):
            chains += len(page.chains)
            for row in trace.trace_csv_rows(page.chains):
                writer.writerow(row)
                rows += 1
    except trace.TraceNotFound:
        return HttpResponse("Nothing to trace with this id.", status=404, content_type="text/plain; charset=utf-8")
    audit_log_write(
        organization_id=organization.pk,
        tag=EXPORT_TAG,
        actor=request.user,
        reason=f"trace export {query.parameter}={query.value}: {chains} chain(s), {rows} row(s)",
        data={"export": "trace", "query": query.as_params(), "chains": chains, "rows": rows},
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    safe_value = "".join(char if char.isalnum() or char in "-_" else "_" for char in query.value)[:64]
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="trace-{query.parameter}-{safe_value}-{stamp}.csv"'
    return response
