"""Start and stop ``bentoml serve mktlab.service:MktlabService`` as a subprocess.

``python -m mktlab.service.server [--port N]`` (what ``make serve`` runs) serves in the
foreground with ``BENTOML_HOME`` pointed at our model store. :class:`ServiceProcess`
starts it in the background, waits until ``/readyz`` answers and reports a startup
failure with the tail of the server's log (e.g. a missing model).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mktlab.config import (
    PROJ_ROOT,
    bentoml_home,
    child_env,
    quiet_tools,
    service_settings,
    settings,
)
from mktlab.errors import ServiceUnavailableError

SERVICE = "mktlab.service:MktlabService"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_command(port: int, host: str) -> list[str]:
    """``bentoml serve`` of the service on ``host:port`` with this interpreter."""
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]


def serve_env(extra: dict[str, str] | None = None, *, workers: int | None = None) -> dict[str, str]:
    """Our environment plus ``BENTOML_HOME`` (the model store) and telemetry off."""
    quiet_tools()
    env = {"BENTOML_HOME": str(bentoml_home())}
    if workers is not None:
        env["MKTLAB_SERVICE_WORKERS"] = str(workers)
    env.update(extra or {})
    return child_env(env)


class ServiceProcess:
    """A ``bentoml serve`` subprocess on ``host:port``; a context manager.

    Parameters
    ----------
    port : int, optional
        Default: a free port.
    host : str, optional
        Default ``service_settings().host`` (localhost).
    env : dict, optional
        Extra environment variables for the server.
    workers : int, optional
        Worker processes (default from ``MKTLAB_SERVICE_WORKERS``, 1).
    log_path : path, optional
        Where the server's output goes (default ``<data_dir>/service/serve-<port>.log``).
    """

    def __init__(self, port=None, host=None, env=None, workers=None, log_path=None):
        cfg = service_settings()
        self.host = host or cfg.host
        self.port = int(port or free_port(self.host))
        self.env = serve_env(env, workers=workers)
        default_log = settings().data_dir / "service" / f"serve-{self.port}.log"
        self.log_path = Path(log_path) if log_path else default_log
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        """Start the server and wait until it is ready (raises with its log tail if it dies)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex((self.host, self.port)) == 0:
                raise ServiceUnavailableError(f"port {self.port} on {self.host} is already in use")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            serve_command(self.port, self.host),
            cwd=PROJ_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceUnavailableError(
                    f"the service exited during startup (code {self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise ServiceUnavailableError(
            f"the service did not become ready in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``timeout``."""
        import os
        import signal

        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> ServiceProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground (``make serve``)."""
    cfg = service_settings()
    ap = argparse.ArgumentParser(
        prog="python -m mktlab.service.server", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--host", default=cfg.host)
    ap.add_argument("--port", type=int, default=cfg.port)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--build", action="store_true", help="build a Bento from bentofile.yaml instead of serving"
    )
    args = ap.parse_args(argv)
    if args.build:
        print(f"building the Bento (model store {bentoml_home()})", flush=True)
        cmd = [
            sys.executable,
            "-m",
            "bentoml",
            "build",
            "-f",
            str(PROJ_ROOT / "bentofile.yaml"),
            str(PROJ_ROOT),
        ]
        return subprocess.call(cmd, cwd=PROJ_ROOT, env=serve_env())
    print(
        f"mktlab service on http://{args.host}:{args.port} (model store {bentoml_home()})",
        flush=True,
    )
    return subprocess.call(
        serve_command(args.port, args.host), cwd=PROJ_ROOT, env=serve_env(workers=args.workers)
    )


if __name__ == "__main__":
    sys.exit(main())
