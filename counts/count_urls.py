"""The associates' count views, mounted at /count/ (see config/urls.py)."""

from django.urls import path

from counts import views

app_name = "count"

urlpatterns = [
    path("", views.run_picker, name="runs"),
    path("sw.js", views.service_worker, name="service-worker"),
    path("runs/<int:run_id>/start", views.run_start, name="run-start"),
    path("session/<int:session_id>/", views.session_page, name="session"),
    path("session/<int:session_id>/catalog.json", views.session_catalog, name="session-catalog"),
    path("session/<int:session_id>/resume", views.session_resume, name="session-resume"),
    path("session/<int:session_id>/pause", views.session_pause, name="session-pause"),
]
