"""Every table of the service on one ``metadata``: Alembic compares migrations against this."""

from __future__ import annotations

from . import ratelimit as _ratelimit  # noqa: F401 - imported to register its table
from .db.metadata import metadata
from .erp import stock_tables as _erp_stock_tables  # noqa: F401 - registers its tables
from .erp import tables as _erp_tables  # noqa: F401 - imported to register its tables
from .orders import tables as _orders_tables  # noqa: F401 - imported to register its tables
from .outbox import tables as _outbox_tables  # noqa: F401 - imported to register its tables
from .shopify import shops as _shops  # noqa: F401 - imported to register its table
from .shopify import tables as _shopify_tables  # noqa: F401 - imported to register its tables

__all__ = ["metadata"]
