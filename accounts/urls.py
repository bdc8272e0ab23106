from django.urls import path, re_path

from accounts.apis import EditTokenApi, MeApi

urlpatterns = [
    path("me/", MeApi.as_view(), name="me"),
    re_path(r"^me/edit-token/?$", EditTokenApi.as_view(), name="me-edit-token"),
]
