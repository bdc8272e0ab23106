"""The associates' count views under /count/: run picker, session page, its catalog, the service worker.

Pages are server-rendered shells; scanning runs in the browser (static/count/*.js) against the
counting API, queueing every scan on the device first. Thin like the API views: they read
through selectors, write through the session services, and never render a book quantity to
someone who may not see it (the session state already leaves it out for blind associates).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.scoping import request_organization
from counts import selectors
from counts.models import (
    CountKind,
    CountRequest,
    CountRun,
    CountSession,
    Identifier,
    RunState,
    SessionState,
    SessionTally,
)
from counts.selectors import facility_count_settings_get, session_state
from counts.services.sessions import (
    ActiveSessionExists,
    RunNotCountable,
    count_session_pause,
    count_session_resume,
    count_session_start,
)
from inventory.models import Item, ItemBarcode, Location

LOGIN_URL = "/accounts/login/"
PICKABLE_RUN_STATES = (RunState.SCHEDULED, RunState.IN_PROGRESS)
OPEN_SESSION_STATES = (SessionState.ACTIVE, SessionState.PAUSED)
# Items sent to a device for offline lookups; anything beyond is still counted, and named once
# the server has matched it.
CATALOG_LIMIT = 20_000
# Static files the service worker keeps for offline use (the pages themselves are cached on visit).
SHELL_ASSETS = (
    "count/count.css",
    "count/core.js",
    "count/page.js",
    "count/runs.js",
    "count/session.js",
    "count/icon.svg",
    "count/manifest.webmanifest",
)

# The worker's code lives with the other static files; it is served from /count/sw.js below.
SERVICE_WORKER_SOURCE = "count/service-worker.js"

member_login_required = login_required(login_url=LOGIN_URL)


def _device_id(request: HttpRequest) -> str:
    """The id the browser keeps for itself (page.js fills the forms in); a fresh one if it sent none."""
    device_id = (request.POST.get("device_id") or "").strip()[:128]
    return device_id or f"web-{secrets.token_hex(8)}"


def _own_session(request: HttpRequest, session_id: int) -> CountSession:
    """The caller's own session; other people's and other organizations' sessions are 404."""
    sessions = selectors.session_list(organization=request_organization(request), user=request.user)
    return get_object_or_404(sessions.filter(user=request.user), pk=session_id)


@never_cache
@member_login_required
@require_GET
def run_picker(request: HttpRequest) -> HttpResponse:
    """`/count/`: the caller's open sessions and the runs they may start."""
    organization = request_organization(request)
    runs = list(
        selectors.run_list(organization=organization, assigned_to=request.user, ordering="due").filter(
            state__in=PICKABLE_RUN_STATES
        )[:100]
    )
    sessions = list(
        selectors.session_list(organization=organization, user=request.user).filter(
            user=request.user, state__in=OPEN_SESSION_STATES
        )
    )
    open_by_run = {session.run_id: session for session in sessions}
    rows = [{"run": run, "session": open_by_run.get(run.pk)} for run in runs]
    return render(
        request,
        "count/runs.html",
        {"rows": rows, "sessions": sessions, "organization": organization},
    )


@member_login_required
@require_POST
def run_start(request: HttpRequest, run_id: int) -> HttpResponse:
    """Start counting a run, or pick up the session already open on it, on this device."""
    try:
        run = selectors.run_get(organization=request_organization(request), run_id=run_id)
    except CountRun.DoesNotExist:
        raise Http404("No such run.") from None
    if not selectors.may_count_run(user=request.user, run=run):
        raise PermissionDenied("This run is assigned to other associates.")
    device_id = _device_id(request)
    mine = CountSession.objects.filter(run=run, user=request.user, state__in=OPEN_SESSION_STATES).first()
    try:
        if mine is not None:
            session = count_session_resume(session=mine, actor=request.user, device_id=device_id)
        else:
            session = count_session_start(run=run, user=request.user, device_id=device_id)
    except ActiveSessionExists as error:
        messages.error(
            request,
            f"You are already counting “{error.session.run.name}”. Pause or submit it before starting another.",
        )
        return redirect("count:runs")
    except RunNotCountable as error:
        messages.error(request, f"This run can't be counted now ({error}).")
        return redirect("count:runs")
    return redirect("count:session", session_id=session.pk)


@member_login_required
@require_POST
def session_resume(request: HttpRequest, session_id: int) -> HttpResponse:
    """Make the session active on this device; the page then rebuilds it from the server."""
    session = _own_session(request, session_id)
    try:
        session = count_session_resume(session=session, actor=request.user, device_id=_device_id(request))
    except ActiveSessionExists as error:
        messages.error(
            request,
            f"You are already counting “{error.session.run.name}”. Pause or submit it before resuming this one.",
        )
        return redirect("count:runs")
    except RunNotCountable as error:
        messages.error(request, f"This run can't be counted now ({error}).")
        return redirect("count:runs")
    return redirect("count:session", session_id=session.pk)


@member_login_required
@require_POST
def session_pause(request: HttpRequest, session_id: int) -> HttpResponse:
    session = _own_session(request, session_id)
    if session.state == SessionState.ACTIVE:
        count_session_pause(session=session, actor=request.user)
        messages.info(request, f"Paused “{session.run.name}”. Your scans are saved.")
    return redirect("count:runs")


@never_cache
@member_login_required
@require_GET
def session_page(request: HttpRequest, session_id: int) -> HttpResponse:
    """The counting page. Its first paint shows the session as the server knows it; core.js adds
    whatever this device still has queued."""
    session = _own_session(request, session_id)
    state = session_state(session, viewer=request.user)
    locations: dict[str, list[dict[str, Any]]] = {}
    for line in state["lines"]:
        locations.setdefault(line["location"], []).append(line)
    return render(
        request,
        "count/session.html",
        {
            "session": session,
            "state": state,
            "lines_by_location": sorted(locations.items()),
            "is_open": session.state in OPEN_SESSION_STATES,
            "is_hard": session.run.kind == CountKind.HARD,
            "is_directed": session.run.kind == CountKind.DIRECTED,
            "requests_left": [request_row for request_row in state["requests"] if not request_row["counted"]],
        },
    )


def _identifier(item: Item, which: str) -> str:
    # Same rule as the session state's lines (counts.apis): first barcode by value for UPC.
    if which == Identifier.UPC:
        barcodes = list(item.barcodes.all())
        return barcodes[0].value if barcodes else item.sku
    return item.name if which == Identifier.NAME else item.sku


def _session_catalog(session: CountSession) -> dict[str, Any]:
    """What a device needs to tell locations from items and name items while offline.

    Locations: every bin of the facility (a scan elsewhere is still recorded, as extra). Items:
    the run's requests (directed) or the stocked items in its scope, plus anything this session
    already counted. No quantities: blind counts stay blind.
    """
    run = session.run
    preferences = facility_count_settings_get(facility=run.facility)
    locations = [
        {"code": code, "barcode": barcode}
        for code, barcode in Location.objects.filter(facility_id=run.facility_id)
        .order_by("code")
        .values_list("code", "barcode")
    ]
    if run.kind == CountKind.DIRECTED:
        scoped = CountRequest.objects.filter(run=run).values("item_id")
    else:
        scoped = selectors.run_scope_balances(run=run).values("item_id")
    counted = SessionTally.objects.filter(session=session).values("item_id")
    items = (
        Item.objects.filter(organization_id=run.organization_id)
        .filter(Q(pk__in=scoped) | Q(pk__in=counted))
        .prefetch_related(Prefetch("barcodes", queryset=ItemBarcode.objects.order_by("value")))
        .order_by("name", "sku")
    )
    chosen = list(items[: CATALOG_LIMIT + 1])
    requested = []
    if run.kind == CountKind.DIRECTED:
        requested = [
            [location, sku]
            for location, sku in CountRequest.objects.filter(run=run).values_list("location__code", "item__sku")
        ]
    return {
        "session": session.pk,
        "run_type": run.kind,
        "preferences": {
            "primary_identifier": preferences.primary_identifier,
            "secondary_identifier": preferences.secondary_identifier,
            "require_scan": preferences.require_scan,
        },
        "locations": locations,
        "items": [
            {
                "sku": item.sku,
                "name": item.name,
                "barcodes": [barcode.value for barcode in item.barcodes.all()],
                "primary": _identifier(item, preferences.primary_identifier),
                "secondary": _identifier(item, preferences.secondary_identifier),
            }
            for item in chosen[:CATALOG_LIMIT]
        ],
        "requested": requested,
        "truncated": len(chosen) > CATALOG_LIMIT,
    }


@member_login_required
@require_GET
def session_catalog(request: HttpRequest, session_id: int) -> JsonResponse:
    session = _own_session(request, session_id)
    response = JsonResponse(_session_catalog(session))
    response["Cache-Control"] = "private, no-cache"
    return response


def _static_bytes(name: str) -> bytes:
    path = finders.find(name)
    if not path:
        raise RuntimeError(f"{name} is missing from the static files")
    with open(path, "rb") as handle:
        return handle.read()


@lru_cache(maxsize=4)
def _worker_parts(urls: tuple[str, ...]) -> tuple[str, str]:
    """The worker's source and a version that changes whenever a shell file changes (so the
    browser installs the new worker and it replaces its cache)."""
    source = _static_bytes(SERVICE_WORKER_SOURCE)
    digest = hashlib.sha256(source)
    for name, url in zip(SHELL_ASSETS, urls, strict=True):
        digest.update(url.encode())
        digest.update(_static_bytes(name))
    return digest.hexdigest()[:16], source.decode("utf-8")


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """`/count/sw.js`, served from here (not /static/) so its scope is /count/.

    No login needed: it holds no data, and the browser re-fetches it without asking.
    """
    urls = tuple(static(name) for name in SHELL_ASSETS)
    # Files change under a developer's hands (DEBUG); in production they change with a deploy.
    version, source = (_worker_parts.__wrapped__ if settings.DEBUG else _worker_parts)(urls)
    config = {
        "version": version,
        "assets": list(urls),
        "core": static("count/core.js"),
        "scope": reverse("count:runs"),
        "login": LOGIN_URL,
    }
    body = f"self.CC_SW_CONFIG = {json.dumps(config)};\n{source}"
    response = HttpResponse(body, content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = reverse("count:runs")
    return response
