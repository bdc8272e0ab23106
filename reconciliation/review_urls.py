"""Review of a run before posting, variance decisions and the recount watchlist (under /api/)."""

from django.urls import re_path

from reconciliation import review_apis as apis

RUN = r"^runs/(?P<run_id>\d+)"
UUID = r"(?P<event_id>[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})"

# Scanners and scripts call these paths exactly as the contract spells them; a trailing slash
# is accepted too.
urlpatterns = [
    re_path(rf"{RUN}/review/?$", apis.RunReviewApi.as_view(), name="run-review"),
    re_path(rf"{RUN}/uncounted/?$", apis.RunUncountedApi.as_view(), name="run-uncounted"),
    re_path(rf"{RUN}/uncounted/accept-zero/?$", apis.UncountedAcceptZeroApi.as_view(), name="run-uncounted-zero"),
    re_path(rf"{RUN}/uncounted/recount/?$", apis.UncountedRecountApi.as_view(), name="run-uncounted-recount"),
    re_path(rf"{RUN}/extras/(?P<line_id>\d+)/include/?$", apis.ExtraIncludeApi.as_view(), name="run-extra-include"),
    re_path(rf"{RUN}/extras/(?P<line_id>\d+)/discard/?$", apis.ExtraDiscardApi.as_view(), name="run-extra-discard"),
    re_path(rf"{RUN}/unmatched/{UUID}/match/?$", apis.UnmatchedMatchApi.as_view(), name="run-unmatched-match"),
    re_path(rf"{RUN}/watchlist/?$", apis.RunWatchlistFlagApi.as_view(), name="run-watchlist-flag"),
    re_path(r"^variances/(?P<variance_id>\d+)/decide/?$", apis.VarianceDecideApi.as_view(), name="variance-decide"),
    re_path(r"^watchlist/?$", apis.WatchlistApi.as_view(), name="watchlist"),
]
