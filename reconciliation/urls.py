from django.urls import path, re_path

from reconciliation import apis

urlpatterns = [
    re_path(r"^runs/(?P<run_id>\d+)/reconcile/?$", apis.ReconcileApi.as_view(), name="run-reconcile"),
    path("variances/", apis.VarianceListApi.as_view(), name="variance-list"),
]
