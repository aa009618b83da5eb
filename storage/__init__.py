"""DuckDB storage: the only package that writes SQL.

``get_database()`` gives the process-wide handle; the modules beside it (``registry``, ``llm_log``,
``jobs``, ``pairs``, ``stats``) hold the named queries and take and return plain Python values.
"""

from storage.db import Database, get_database

__all__ = ["Database", "get_database"]
