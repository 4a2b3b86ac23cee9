"""Observability: JSON logs in Elastic Common Schema (``logs.py``), business events that are logged
and counted once (``events.py``), and Prometheus metrics (``metrics.py``)."""
