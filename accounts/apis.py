from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import membership_for_user


class MeApi(APIView):
    """Who am I, in which organization, with which role."""

    class Output(serializers.Serializer):
        username = serializers.CharField(source="user.username")
        organization = serializers.CharField(source="organization.slug")
        role = serializers.CharField()

    @extend_schema(responses=Output)
    def get(self, request: Request) -> Response:
        return Response(self.Output(membership_for_user(request.user)).data)
