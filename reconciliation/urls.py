from django.urls import include, path, re_path

from reconciliation import apis

urlpatterns = [
    re_path(r"^runs/(?P<run_id>\d+)/reconcile/?$", apis.ReconcileApi.as_view(), name="run-reconcile"),
    re_path(r"^runs/(?P<run_id>\d+)/close/?$", apis.RunCloseApi.as_view(), name="run-close"),
    path("variances/", apis.VarianceListApi.as_view(), name="variance-list"),
    path("", include("reconciliation.review_urls")),
]
