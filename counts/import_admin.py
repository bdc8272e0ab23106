"""Admin screens for CSV plan and results imports (filled in by the imports work)."""
