"""Alembic revision files (a package only so that installers ship them)."""
