"""``user_id`` -> dense ``uid`` through the saved identity map, for request-time code.

The service, the live workers and the campaign tools ask one user at a time; this keeps
the saved :class:`~mktlab.identity.IdentityMap` loaded and reloads it when a new map is
saved (its ``CURRENT`` pointer changes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mktlab.errors import NotFoundError, ServiceUnavailableError
from mktlab.io import FileBacked


class IdentityLookup:
    """Resolve application user ids to uids through the latest saved map.

    Parameters
    ----------
    path : str or Path, optional
        Folder of saved maps (default :func:`mktlab.identity.map.default_path`).
    id_type : str
        Identifier type of the ids asked for (default ``user_id``).
    """

    def __init__(self, path: str | Path | None = None, *, id_type: str = "user_id"):
        self.path = Path(path) if path is not None else None
        self.id_type = id_type
        self._map = FileBacked(self._pointer, self._load)

    def _pointer(self) -> Path:
        from mktlab.identity.map import default_path

        return (self.path or default_path()) / "CURRENT"

    def _load(self) -> Any:
        from mktlab.identity.map import IdentityMap

        return IdentityMap.load(self.path)

    def identity_map(self) -> Any:
        imap = self._map.get()
        if imap is None:
            raise ServiceUnavailableError(
                f"identity: no identity map saved at {self._pointer().parent} (`mktlab identity resolve`)"
            )
        return imap

    def uid(self, user_id: str) -> int | None:
        """The user's uid, or ``None`` for an id the map does not know."""
        try:
            return int(self.identity_map().lookup(self.id_type, user_id).uid)
        except NotFoundError:
            return None
