"""The trace: the API (mounted under /api/, see config/urls.py) and the page with its export (/trace/)."""

from django.urls import path

from audit import apis, views

urlpatterns = [
    path("trace/", apis.TraceApi.as_view(), name="trace"),
]

# Mounted at /trace/ in config/urls.py: `include(audit.urls.page_patterns)`.
page_patterns = (
    [
        path("", views.trace_page, name="trace"),
        path("export.csv", views.trace_export, name="trace-export"),
    ],
    "audit",
)
