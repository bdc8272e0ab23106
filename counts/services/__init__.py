"""Writes for counting, one module per use case family:

planning (runs, schedules, directed requests), rotation (the weekly zone rotation),
sessions (start, pause, resume, submit), capture (ingesting scans), imports (CSV plans/results).
"""
