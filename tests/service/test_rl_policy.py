"""With an ``rl_policy@champion`` registered, ``/next_action`` answers from it (not the fallback)."""

from __future__ import annotations

import os

import pytest

from mktlab import tracking


def _policy(model_input):
    # a stand-in policy (issue 9 trains the real one): coupon to the recently active
    import numpy as np
    import pandas as pd

    return pd.DataFrame({"action": np.where(model_input["recency_days"] < 30, "coupon", "push")})


@pytest.fixture(scope="module")
def rl_store(workspace, served_models):
    """A separate model store holding uplift and an rl_policy (the session store stays as is)."""
    from mktlab.service import models as store

    home = workspace / "models-rl"
    old = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(home)
    try:
        with tracking.start_run("rl-test", "stand-in policy"):
            info = tracking.log_pyfunc_model(_policy, name="model")
        version = tracking.register_model(info.model_uri, "rl_policy")
        store.import_champion("uplift")
        store.import_champion("rl_policy")
        yield {"BENTOML_HOME": str(home), "version": version}
    finally:
        # later modules serve from the session store, without an rl_policy champion
        from mlflow import MlflowClient

        tracking.tracking_uri()
        MlflowClient().delete_registered_model_alias("rl_policy", "champion")
        if old is None:
            os.environ.pop("BENTOML_HOME", None)
        else:
            os.environ["BENTOML_HOME"] = old
        store.bentoml_module()


def test_next_action_uses_the_registered_policy(rl_store, service_env):
    from mktlab.service.server import ServiceProcess
    from tests.service.conftest import HTTP

    env = {**service_env["values"], "BENTOML_HOME": rl_store["BENTOML_HOME"]}
    with ServiceProcess(env=env, log_path=service_env["dir"] / "serve-rl.log") as sp:
        http = HTTP(sp.url)
        _, health = http.get("/healthz")
        assert health["models"]["rl_policy"]["mlflow_version"] == rl_store["version"]
        assert health["endpoints"]["next_action"] == "rl_policy"
        status, ans = http.post(
            "/next_action", {"state": {"recency_days": 3, "tier_level": 2}, "user_id": "U1"}
        )
        assert status == 200
        assert (ans["action"], ans["source"], ans["model_version"]) == (
            "coupon",
            "rl_policy",
            rl_store["version"],
        )
        _, ans = http.post("/next_action", {"state": {"recency_days": 90, "tier_level": 2}})
        assert ans["action"] == "push"
        status, body = http.post("/next_action", {"state": {"tier_level": 2}})
        assert status == 422
        assert "recency_days" in body["error"]
