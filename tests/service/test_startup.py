"""Startup failures are clear: a missing model stops the server with a message naming it."""

from __future__ import annotations

import pytest

from mktlab.errors import ServiceUnavailableError
from mktlab.service.server import ServiceProcess, free_port


def test_missing_model_is_a_clear_startup_error(tmp_path, served_models):
    empty = tmp_path / "empty-store"
    sp = ServiceProcess(env={"BENTOML_HOME": str(empty)}, log_path=tmp_path / "serve.log")
    with pytest.raises(ServiceUnavailableError) as err:
        sp.start(timeout=120)
    msg = str(err.value)
    assert "exited during startup" in msg
    assert "model(s) ['uplift'] not in the BentoML model store" in msg
    assert "mktlab models import" in msg


def test_a_busy_port_is_refused(tmp_path):
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(ServiceUnavailableError, match="already in use"):
            ServiceProcess(port=port, log_path=tmp_path / "serve.log").start(timeout=5)
