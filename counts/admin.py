from counts import import_admin  # noqa: F401 - registers the plan/results import admin views
