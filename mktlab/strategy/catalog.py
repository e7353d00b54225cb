"""Saved strategies, one YAML file each: what the live workers and ``/issue`` run.

A strategy is saved under ``<processed_dir>/strategies/<name>.yaml`` (written to a temp
file, then renamed). Saving a new definition under a name needs a higher ``version``
than the saved one, so a running version is never changed in place: live decision keys
carry the version. Readers re-scan the folder at most once a second.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mktlab.config import settings
from mktlab.errors import NotFoundError, ValidationError
from mktlab.io import write_text
from mktlab.strategy.spec import Strategy


def default_dir() -> Path:
    return settings().processed_dir / "strategies"


class StrategyCatalog:
    """Strategies by name and by issuer campaign id.

    Parameters
    ----------
    path : str or Path, optional
        Default ``<processed_dir>/strategies``.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_dir()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._checked = 0.0
        self._items: dict[str, Strategy] = {}

    def __repr__(self) -> str:
        return f"StrategyCatalog({str(self.path)!r})"

    def _scan(self) -> dict[str, Strategy]:
        now = time.monotonic()
        if now - self._checked < 1.0 and self._stamp is not None:
            return self._items
        with self._lock:
            files = sorted(self.path.glob("*.yaml")) if self.path.exists() else []
            stamp = tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)
            if stamp != self._stamp:
                self._items = {}
                for f in files:
                    s = Strategy.from_yaml(f)
                    self._items[s.name] = s
                self._stamp = stamp
            self._checked = now
            return self._items

    def names(self) -> list[str]:
        return sorted(self._scan())

    def get(self, name: str) -> Strategy:
        items = self._scan()
        if name not in items:
            raise NotFoundError(
                f"strategy {name!r}: not saved in {self.path}; saved: {sorted(items)}"
            )
        return items[name]

    def for_campaign(self, campaign_id: str) -> Strategy | None:
        """The saved strategy that governs issuer campaign ``campaign_id`` (None: no extra check)."""
        hits = [s for s in self._scan().values() if s.campaign_id == campaign_id]
        if len(hits) > 1:
            raise ValidationError(
                f"campaign {campaign_id!r} is governed by several strategies: {sorted(s.name for s in hits)}"
            )
        return hits[0] if hits else None

    def save(self, strategy: Strategy, *, replace: bool = False) -> Strategy:
        """Save ``strategy``; a new definition under a saved name needs a higher version."""
        if not isinstance(strategy, Strategy):
            raise ValidationError(f"strategy: expected a Strategy, got {type(strategy).__name__}")
        items = self._scan()
        old = items.get(strategy.name)
        changed = old is not None and not replace and old.to_dict() != strategy.to_dict()
        if changed and strategy.version <= old.version:
            raise ValidationError(
                f"strategy {strategy.name!r}: version {strategy.version} is saved already with "
                f"another definition; save it as version {old.version + 1}"
            )
        if strategy.campaign_id is not None:
            other = [
                s.name
                for s in items.values()
                if s.campaign_id == strategy.campaign_id and s.name != strategy.name
            ]
            if other:
                raise ValidationError(
                    f"campaign {strategy.campaign_id!r} is governed by strategy {other[0]!r} already"
                )
        write_text(strategy.to_yaml(), self.path / f"{strategy.name}.yaml")
        with self._lock:
            self._stamp = None
        return strategy

    def delete(self, name: str) -> None:
        f = self.path / f"{name}.yaml"
        if not f.exists():
            raise NotFoundError(f"strategy {name!r}: not saved in {self.path}")
        f.unlink()
        with self._lock:
            self._stamp = None
