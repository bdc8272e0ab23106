"""Account pages for people: the personal edit token (for X-Edit-Token on the API), and the
page shown instead of a login while a username + address is locked out."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from axes.helpers import get_client_username
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.models import EditToken
from accounts.selectors import login_lockout_end
from accounts.services import edit_token_rotate
from accounts.throttling import token_issue_wait

LOGIN_URL = "/accounts/login/"


@never_cache
@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
def edit_token_page(request: HttpRequest) -> HttpResponse:
    """`/accounts/edit-token/`: issue (or replace) the caller's edit token.

    The new token is in the response to the POST and nowhere else: only its hash is stored,
    and the page is never cached, so it cannot be shown again (rotating replaces it). The
    response is rendered rather than redirected because a redirect would need the raw token
    kept somewhere in between.
    """
    if request.method == "POST":
        wait = token_issue_wait(request)
        if wait is not None:
            return _too_many(
                request, kind="edit_token", retry_at=timezone.now() + timedelta(seconds=wait), back=request.path
            )
        token = edit_token_rotate(user=request.user)
        return render(request, "accounts/edit_token.html", {"token": token, "issued_at": None})
    issued_at = EditToken.objects.filter(user=request.user).values_list("created_at", flat=True).first()
    return render(request, "accounts/edit_token.html", {"token": None, "issued_at": issued_at})


def _too_many(request: HttpRequest, *, kind: str, retry_at: datetime, back: str, **context: Any) -> HttpResponse:
    """HTTP 429 with the time to try again, on the page and in Retry-After."""
    seconds = max(1, math.ceil((retry_at - timezone.now()).total_seconds()))
    response = render(
        request,
        "registration/locked_out.html",
        {"kind": kind, "retry_at": retry_at, "minutes": math.ceil(seconds / 60), "back": back, **context},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    add_never_cache_headers(response)
    return response


def login_locked_out(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """django-axes' lockout response (settings.AXES_LOCKOUT_CALLABLE), for /accounts/login/ and
    /admin/login/ alike: the lockout page saying when this username may try again from here."""
    username = get_client_username(request, credentials) or ""
    retry_at = login_lockout_end(username=username, ip_address=getattr(request, "axes_ip_address", None))
    if retry_at is None or retry_at <= timezone.now():
        retry_at = timezone.now() + settings.AXES_COOLOFF_TIME
    return _too_many(
        request,
        kind="login",
        retry_at=retry_at,
        back=request.get_full_path(),
        username=username,
        failure_limit=settings.AXES_FAILURE_LIMIT,
    )
