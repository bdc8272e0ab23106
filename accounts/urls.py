from django.urls import path, re_path

from accounts.apis import ApiTokenRevokeApi, EditTokenApi, EditTokenRevokeApi, MeApi

urlpatterns = [
    path("me/", MeApi.as_view(), name="me"),
    re_path(r"^me/edit-token/?$", EditTokenApi.as_view(), name="me-edit-token"),
    re_path(r"^me/edit-token/revoke/?$", EditTokenRevokeApi.as_view(), name="me-edit-token-revoke"),
    re_path(r"^me/token/revoke/?$", ApiTokenRevokeApi.as_view(), name="me-token-revoke"),
]
