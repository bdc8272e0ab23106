from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from audit import urls as audit_urls
from config.health import healthz

# Under /api/ every error is JSON, also those Django answers itself; pages keep Django's pages.
handler400 = "config.api_errors.request_refused"
handler404 = "config.api_errors.not_found"

admin.site.site_header = "Cyclecount"
admin.site.site_title = "Cyclecount"
admin.site.index_title = "Dashboard"

api_patterns = [
    path("", include("accounts.urls")),
    path("", include("inventory.urls")),
    path("", include("counts.urls")),
    path("", include("reconciliation.urls")),
    path("", include("approvals.urls")),
    path("", include("audit.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file, so the CSP needs no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", include("reconciliation.report_urls")),  # before the admin: it serves the admin index with the tile
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.view_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include(api_patterns)),
    path("count/", include("counts.count_urls")),
    path("proposed-actions/", include("approvals.view_urls")),
    path("trace/", include(audit_urls.page_patterns)),
]
