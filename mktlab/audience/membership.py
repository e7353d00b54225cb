"""Membership of one user in saved audiences, for request-time code.

:class:`SavedAudiences` answers "is this user in audience X?" for the service's
``/issue``, the live workers and journeys: application user ids go through the identity
map to uids, uids are tested against the saved bitmaps, and both reload when a new map or
audience is saved.
"""

from __future__ import annotations

import threading
from typing import Any

from mktlab.errors import NotFoundError
from mktlab.io import FileBacked


class SavedAudiences:
    """Saved audience bitmaps by name, reloaded when the catalog changes.

    Parameters
    ----------
    catalog : AudienceCatalog, optional
        Default: the workspace catalog.
    identity : IdentityLookup, optional
        Maps user ids to uids; default: the latest saved identity map.
    """

    def __init__(self, catalog: Any = None, identity: Any = None):
        from mktlab.audience.catalog import AudienceCatalog
        from mktlab.identity.lookup import IdentityLookup

        self.catalog = catalog if catalog is not None else AudienceCatalog()
        self.identity = identity if identity is not None else IdentityLookup()
        self._bitmaps: dict[str, Any] = {}
        self._lock = threading.Lock()
        # the catalog file's stamp decides when cached bitmaps are dropped
        self._epoch = FileBacked(lambda: self.catalog.path, object)
        self._seen_epoch: Any = None

    def bitmap(self, audience: str) -> Any:
        """The saved bitmap of ``audience`` (NotFoundError names the audience)."""
        epoch = self._epoch.get()
        with self._lock:
            if epoch is not self._seen_epoch:
                self._bitmaps, self._seen_epoch = {}, epoch
            bm = self._bitmaps.get(audience)
        if bm is None:
            try:
                bm = self.catalog.get(audience).bitmap
            except NotFoundError as exc:
                raise NotFoundError(f"audience {audience!r}: {exc}") from exc
            with self._lock:
                self._bitmaps[audience] = bm
        return bm

    def contains_uid(self, audience: str, uid: int) -> bool:
        return uid in self.bitmap(audience)

    def in_audience(self, audience: str, user_id: str) -> bool:
        """Whether application user ``user_id`` is in ``audience`` (unknown users are not)."""
        uid = self.identity.uid(user_id)
        return uid is not None and self.contains_uid(audience, uid)
