"""GET /healthz: whether the API and its store answer (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import StoreDep
from api.models import HealthPublic

router = APIRouter(tags=["health"])


@router.get("/healthz", responses={503: {"model": HealthPublic}})
def healthz(store: StoreDep, response: Response) -> HealthPublic:
    """Report 200 when the store answers, 503 when it does not."""
    if store.ping():
        return HealthPublic(status="ok", store=True)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthPublic(status="unavailable", store=False)
