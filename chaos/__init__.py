"""`make chaos`: a fault run against a private redis-server (``python -m chaos.run``)."""
