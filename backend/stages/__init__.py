"""The run's stages, one a module (check, provision, sync, train, collect, compare, report);
``base.py`` holds what they share. The session's plan runs them in order."""
