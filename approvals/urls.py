from django.urls import path, re_path

from approvals import apis

urlpatterns = [
    path("proposals/", apis.ProposalListApi.as_view(), name="proposal-list"),
    re_path(r"^inventory/adjust/?$", apis.AdjustApi.as_view(), name="inventory-adjust"),
]
