"""The model service: BentoML endpoints over the mktlab capabilities.

``bentoml serve mktlab.service:MktlabService`` (or ``make serve``) starts it. The class is
defined in :mod:`mktlab.service.service` and imported lazily here, because defining it
reads the BentoML model store (the served champions shape the typed inputs).

- :mod:`~mktlab.service.models`: MLflow ``@champion`` -> BentoML model store (import, promote).
- :mod:`~mktlab.service.core`: the request logic, callable in-process (tests, benchmark).
- :mod:`~mktlab.service.server`: start/stop ``bentoml serve`` as a subprocess.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MktlabService"]


def __getattr__(name: str) -> Any:
    if name == "MktlabService":
        from mktlab.service.service import MktlabService

        return MktlabService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
