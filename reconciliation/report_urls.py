"""The managers' pages, included at the root by config/urls.py *before* the admin.

`admin/` is the admin index with the reporting tile (the admin's own view, given the tile's
context); every other admin URL stays the admin's. Export jobs (audit) are mounted here too so
that one include serves the reports.
"""

from django.urls import path

from audit import export_views
from reconciliation import report_views

app_name = "reports"

urlpatterns = [
    path("admin/", report_views.admin_index_view, name="dashboard"),
    path("inventory/variances", report_views.variance_report, name="variances"),
    path("inventory/variances/associates", report_views.variance_associates, name="variance-associates"),
    path("inventory/variances/export.<str:file_format>", report_views.variance_report_export, name="variances-export"),
    path("inventory/exports", export_views.export_jobs, name="exports"),
    path("inventory/exports/<int:job_id>/download", export_views.export_job_download, name="export-download"),
]
