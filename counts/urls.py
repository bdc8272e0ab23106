from django.urls import include, path, re_path

from counts import apis

# Scanners and scripts call these paths exactly as the contract spells them; a trailing slash
# is accepted too.
urlpatterns = [
    path("runs/", apis.RunListApi.as_view(), name="run-list"),
    re_path(r"^runs/(?P<run_id>\d+)/?$", apis.RunDetailApi.as_view(), name="run-detail"),
    re_path(r"^runs/(?P<run_id>\d+)/start/?$", apis.RunStartApi.as_view(), name="run-start"),
    re_path(r"^runs/(?P<run_id>\d+)/cancel/?$", apis.RunCancelApi.as_view(), name="run-cancel"),
    re_path(r"^runs/(?P<run_id>\d+)/lines/?$", apis.RunLinesApi.as_view(), name="run-lines"),
    path("sessions/", apis.SessionListApi.as_view(), name="session-list"),
    re_path(r"^sessions/(?P<session_id>\d+)/?$", apis.SessionDetailApi.as_view(), name="session-detail"),
    re_path(r"^sessions/(?P<session_id>\d+)/pause/?$", apis.SessionPauseApi.as_view(), name="session-pause"),
    re_path(r"^sessions/(?P<session_id>\d+)/resume/?$", apis.SessionResumeApi.as_view(), name="session-resume"),
    re_path(r"^sessions/(?P<session_id>\d+)/submit/?$", apis.SessionSubmitApi.as_view(), name="session-submit"),
    re_path(r"^inventory/count/?$", apis.CaptureApi.as_view(), name="inventory-count"),
    path("signals/", apis.SignalApi.as_view(), name="signal-create"),
    path("", include("counts.import_urls")),
]
