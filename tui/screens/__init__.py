"""Screens pushed over the dashboard: quit, help, runs, a run's details, the log view."""
