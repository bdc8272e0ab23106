"""API routes for CSV imports and saved column mappings (included by counts.urls under /api/).

Paths are matched as the contract spells them; a trailing slash is accepted too, like the
other counts routes.
"""

from django.urls import re_path

from counts import import_apis

urlpatterns = [
    re_path(r"^imports/plan/?$", import_apis.PlanImportApi.as_view(), name="imports-plan"),
    re_path(r"^imports/plan/template/?$", import_apis.PlanTemplateApi.as_view(), name="imports-plan-template"),
    re_path(r"^imports/results/?$", import_apis.ResultsImportApi.as_view(), name="imports-results"),
    re_path(r"^imports/results/template/?$", import_apis.ResultsTemplateApi.as_view(), name="imports-results-template"),
    re_path(r"^column-mappings/?$", import_apis.ColumnMappingsApi.as_view(), name="imports-column-mappings"),
]
