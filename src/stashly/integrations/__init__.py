"""Glue to frameworks. Each module here is the only place its framework is imported."""
