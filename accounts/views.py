"""Account pages for people: the personal edit token (for X-Edit-Token on the API)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.models import EditToken
from accounts.services import edit_token_rotate

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
        token = edit_token_rotate(user=request.user)
        return render(request, "accounts/edit_token.html", {"token": token, "issued_at": None})
    issued_at = EditToken.objects.filter(user=request.user).values_list("created_at", flat=True).first()
    return render(request, "accounts/edit_token.html", {"token": None, "issued_at": issued_at})
