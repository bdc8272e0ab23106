"""API routes for CSV imports (filled in by the imports work)."""

urlpatterns: list = []
