"""PostgreSQL storage: the pool, migrations and one repository per kind of record."""

from csms.store.database import Database, open_database
from csms.store.store import Store

__all__ = ["Database", "Store", "open_database"]
