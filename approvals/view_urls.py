"""The reviewers' queue, mounted at /proposed-actions/ (see config/urls.py)."""

from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("", views.proposal_queue, name="queue"),
]
