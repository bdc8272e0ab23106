"""Account pages for people (not the API), mounted at /accounts/ before Django's auth views."""

from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("edit-token/", views.edit_token_page, name="edit-token"),
]
