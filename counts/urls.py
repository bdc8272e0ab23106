from django.urls import include, path

urlpatterns = [
    path("", include("counts.import_urls")),
]
