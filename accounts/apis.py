from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import membership_for_user
from accounts.services import api_token_revoke, edit_token_revoke, edit_token_rotate
from accounts.throttling import TOKEN_ISSUE_SCOPE


class MeApi(APIView):
    """Who am I, in which organization, with which role."""

    class Output(serializers.Serializer):
        username = serializers.CharField(source="user.username")
        organization = serializers.CharField(source="organization.slug")
        role = serializers.CharField()

    @extend_schema(responses=Output)
    def get(self, request: Request) -> Response:
        return Response(self.Output(membership_for_user(request.user)).data)


class EditTokenApi(APIView):
    """`POST /api/me/edit-token`: issue a new personal edit token, shown this once."""

    throttle_scope = TOKEN_ISSUE_SCOPE

    class Output(serializers.Serializer):
        edit_token = serializers.CharField()

    @extend_schema(request=None, responses={201: Output})
    def post(self, request: Request) -> Response:
        raw = edit_token_rotate(user=request.user)
        return Response({"edit_token": raw}, status=status.HTTP_201_CREATED)


class ApiTokenRevokeApi(APIView):
    """`POST /api/me/token/revoke`: revoke the calling API token (with a browser session: the
    user's API token). The next request with it answers 401. Audited as `api_token_revoked`."""

    class Input(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    class Output(serializers.Serializer):
        revoked = serializers.BooleanField(help_text="False when there was no API token to revoke.")

    @extend_schema(request=Input, responses=Output)
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        revoked = api_token_revoke(
            user=request.user, actor=request.user, reason=data.validated_data["reason"] or "revoked by its owner"
        )
        return Response(self.Output({"revoked": revoked}).data)


class EditTokenRevokeApi(APIView):
    """`POST /api/me/edit-token/revoke`: revoke the caller's personal edit token (X-Edit-Token no
    longer matches; issue a new one to approve again). Audited as `edit_token_revoked`."""

    class Input(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")

    class Output(serializers.Serializer):
        revoked = serializers.BooleanField(help_text="False when there was no edit token to revoke.")

    @extend_schema(request=Input, responses=Output)
    def post(self, request: Request) -> Response:
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        revoked = edit_token_revoke(
            user=request.user, actor=request.user, reason=data.validated_data["reason"] or "revoked by its owner"
        )
        return Response(self.Output({"revoked": revoked}).data)
