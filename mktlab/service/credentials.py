"""The service process's handles on the campaign registry: its database, key store and audit buffer.

Opened on first use (importing the service touches no database) and closed on shutdown.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_db: Any = None
_keys: Any = None
_audit: Any = None


def db() -> Any:
    """The registry database (``MKTLAB_DB_URL``, else SQLite under the data folder)."""
    global _db
    with _lock:
        if _db is None:
            from mktlab.campaigns.db import CampaignDB

            _db = CampaignDB()
        return _db


def keystore() -> Any:
    global _keys
    if _keys is None:
        from mktlab.campaigns.access import KeyStore

        store = KeyStore(db(), audit=audit())
        with _lock:
            _keys = _keys or store
    return _keys


def audit() -> Any:
    global _audit
    if _audit is None:
        from mktlab.campaigns.db import AuditBuffer

        buf = AuditBuffer(db())
        with _lock:
            if _audit is None:
                _audit = buf
            else:
                buf.close()
    return _audit


def close() -> None:
    global _audit
    if _audit is not None:
        _audit.close()
        _audit = None
