"""URLconf of the DOT site: DOT's own endpoints under ``/o/`` and three protected views.

Imported by Django on the first request, after the settings are configured.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from oauth2_provider.views import (
    ProtectedResourceMetadataView,
    ProtectedResourceView,
    ScopedProtectedResourceMetadataView,
)
from oauth2_provider.views.mixins import OAuthLibMixin


class _WhoAmI(OAuthLibMixin):
    """Answers with what DOT knows about the token the request carried."""

    def verify_request(self, request: HttpRequest) -> tuple[bool, Any]:
        valid, oauthlib_request = super().verify_request(request)
        if valid:
            # DOT's validator leaves its AccessToken row on the oauthlib request.
            request.oauth2_token = oauthlib_request.access_token
        return valid, oauthlib_request

    def get(self, request: HttpRequest) -> HttpResponse:
        token = request.oauth2_token
        return JsonResponse(
            {
                "client_id": token.application.client_id,
                "scope": token.scope,
                "user": None if token.user is None else token.user.get_username(),
                "resource": token.resource,
            }
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        answer = json.loads(self.get(request).content)
        answer["echo"] = json.loads(request.body)
        return JsonResponse(answer)


class WhoAmIView(_WhoAmI, ProtectedResourceMetadataView):
    pass


class LegacyWhoAmIView(_WhoAmI, ProtectedResourceView):
    pass


class WriteWhoAmIView(_WhoAmI, ScopedProtectedResourceMetadataView):
    required_scopes = ["write"]  # noqa: RUF012  (DOT's attribute, a plain list)


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/whoami/", WhoAmIView.as_view()),
    path("api/legacy/", LegacyWhoAmIView.as_view()),
    path("api/write/", WriteWhoAmIView.as_view()),
]
