from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import membership_for_user
from accounts.services import edit_token_rotate


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

    class Output(serializers.Serializer):
        edit_token = serializers.CharField()

    @extend_schema(request=None, responses={201: Output})
    def post(self, request: Request) -> Response:
        raw = edit_token_rotate(user=request.user)
        return Response({"edit_token": raw}, status=status.HTTP_201_CREATED)
