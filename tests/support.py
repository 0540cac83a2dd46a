"""Helpers shared by the integration and e2e tiers: polling, the serve CLI, app status."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml

from graphs.cluster import client_env
from tests.session import CONTROL_TOKEN

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_URL = "http://127.0.0.1:8000"
#: Short ingress draining: tests delete apps often and nothing is in flight by then. Metrics
#: reach Ray's Prometheus endpoint every second instead of every 10 s.
TEST_CLUSTER_ENV = {
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
    "RAY_metrics_report_interval_ms": "1000",
}
#: Headers a control request of the tests carries.
CONTROL_HEADERS = {"Authorization": f"Bearer {CONTROL_TOKEN}"}


def dashboard_auth() -> dict[str, str]:
    """The Authorization header Ray's dashboard API wants (the session's Ray token)."""
    from graphs.cluster import token_path

    with open(token_path()) as f:
        return {"Authorization": f"Bearer {f.read().strip()}"}


def wait_for(predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def ensure_serve() -> None:
    """Serve running on 127.0.0.1:8000 (started again if a test shut it down)."""
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})


def serve_gone(timeout: float = 180) -> None:
    """Wait until Serve's controller has finished shutting down (after ``serve run`` exits on
    Ctrl-C). ``serve run`` waits 30 s for that, then exits anyway, and a controller still
    shutting down when Serve starts again restarts from its checkpoint with the apps it had
    (seen: the LLM A/B app came back in the middle of the next config's test)."""
    import ray
    from ray import serve
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    serve.shutdown()  # waits for the controller's own graceful shutdown (another 30 s at most)

    def gone() -> bool:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:
            return True
        return False

    wait_for(gone, timeout, "Serve's controller to shut down")


def delete_app(*names: str) -> None:
    """Delete apps and wait until they are gone (polling every 0.25 s; ``serve.delete`` polls
    once a second). Not waiting saved no time here and made HAProxy reload while the next app
    came up (a 404 on a route just found live)."""
    from ray.serve.context import _get_global_client

    _get_global_client().delete_apps(list(names), blocking=False)
    wait_for(lambda: all(app_status(n) is None for n in names), 60, f"apps {names} deleted")


def app_status(name: str) -> str | None:
    from ray import serve

    app = serve.status().applications.get(name)
    return app.status if app else None


def wait_app_running(name: str, timeout: float = 180) -> None:
    from ray import serve

    def running() -> bool:
        status = app_status(name)
        if status == "DEPLOY_FAILED":
            raise AssertionError(f"app {name} failed: {serve.status().applications[name].message}")
        return status == "RUNNING"

    wait_for(running, timeout, f"app {name} RUNNING")
    # Every test app is a graph served at /<name>; HAProxy picks up its route a moment later.
    wait_for(lambda: route_live(name), 60, f"route /{name}")


@contextlib.contextmanager
def apps_running(apps: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """Submit every Application of ``apps`` at ``/<name>`` together, wait until each runs and
    yield their URLs by name; delete them after."""
    from ray import serve

    for name, app in apps.items():
        serve.api._run(app, name=name, route_prefix=f"/{name}", _blocking=False)
    try:
        for name in apps:
            wait_app_running(name)
        yield {name: f"{BASE_URL}/{name}" for name in apps}
    finally:
        delete_app(*apps)


def route_live(name: str, checks: int = 4) -> bool:
    """Whether /<name> answers ``checks`` times in a row, 0.25 s apart: HAProxy reloads its
    config more than once as an app comes up, and a request can land in between."""
    import httpx

    for i in range(checks):
        if i:
            time.sleep(0.25)
        if httpx.get(f"{BASE_URL}/{name}/v2/health/live", timeout=10).status_code != 200:
            return False
    return True


def tool(name: str) -> str:
    """A console script installed beside this Python (serve, locust, ...)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def serve_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run Ray's ``serve`` CLI as a user would (from the repo root, with RAY_AUTH_MODE set)."""
    return subprocess.run(
        [tool("serve"), *args],
        cwd=ROOT,
        env=client_env(),
        text=True,
        capture_output=True,
        check=check,
        timeout=300,
    )


def _ctrl_c_default() -> None:
    """Ctrl-C (SIGINT) as a terminal's foreground command has it. A command started in the
    background by a non-interactive shell (``pytest ... &``, ``nohup``, a CI runner's job)
    inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: ``serve run`` kept
    sleeping through the tests' Ctrl-C until it was killed 45 s later."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def serve_running(config: str, blocking: bool = True) -> Iterator[None]:
    """``serve run <config>`` as a user runs it, against the session cluster, until the block ends.

    Blocking (the default) keeps the command in the foreground and ends it with Ctrl-C (SIGINT),
    on which ``serve run`` shuts Serve down (started again here); ``blocking=False`` runs
    ``serve run --non-blocking``, which returns once the config is submitted, and the block's end
    deletes the config's apps. Either way the command must have said it ran the config file."""
    with open(os.path.join(ROOT, config)) as f:
        names = [app["name"] for app in yaml.safe_load(f)["applications"]]
    args = [tool("serve"), "run", *([] if blocking else ["--non-blocking"]), config]
    # PYTHONFAULTHANDLER: a command that does not exit after Ctrl-C is stopped with SIGABRT,
    # on which Python prints every thread's stack (where it hangs) before it dies.
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**client_env(), "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ctrl_c_default,
    )
    # Read as it comes: the replicas' logs stream to the command, and a full pipe would stall it.
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        if not blocking:
            proc.wait(timeout=120)
            reader.join(timeout=10)
            assert proc.returncode == 0, "".join(lines)[-2000:]
        yield
    finally:
        if blocking:
            proc.send_signal(signal.SIGINT)  # serve run shuts Serve down on Ctrl-C
            killed = False
            try:
                # It gives Serve's shutdown 30 s, then exits anyway (then serve_gone below
                # waits for the rest).
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # stacks to its output (faulthandler)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                killed = True
            reader.join(timeout=10)
            if killed:  # to the CI log past pytest's capture (a warning would fail the test)
                print(
                    f"`serve run {config}` did not exit 45 s after Ctrl-C and was killed; "
                    f"its last output, with its threads' stacks: {''.join(lines)[-12000:]}",
                    file=sys.__stderr__,
                )
            serve_gone()
            ensure_serve()
        else:
            delete_app(*names)
    out = "".join(lines)
    assert "Running config file" in out, out[-2000:]


#: The fuzzer's checks: no 5xx, every status, media type and body as the document says, and
#: invalid requests refused.
FUZZ_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)


def fuzz(url: str, seconds: int = 45, max_examples: int = 25, stateful: bool = True) -> str:
    """Run the schema fuzzer (schemathesis) against ``url``'s OpenAPI document with
    :data:`FUZZ_CHECKS`, at most ``max_examples`` per operation and ``seconds`` in all, with a
    fixed seed and Hypothesis derandomized. Path parameters come from the document alone (it
    lists the names that exist); no control token is sent, so control actions answer their
    documented 401 and change nothing. Fails with the fuzzer's report when it finds anything.

    The phases are the documented examples, the coverage cases (each bound, each required field
    missing, each wrong type), the fuzzing of every operation and, with ``stateful``, chains of
    calls along the links the fuzzer infers from the document (a link is followed only after a
    generated request succeeded: on the LLM graph 2 of its 15 were; on the digits graph none of
    9 in 183 scenarios). The fuzzer runs until ``seconds`` are up whatever the phases (seen:
    fuzzing alone fills the time a stateful phase would have had)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                tool("st"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                ",".join(FUZZ_CHECKS),
                "--phases",
                "examples,coverage,fuzzing" + (",stateful" if stateful else ""),
                "--max-examples",
                str(max_examples),
                "--max-time",
                str(seconds),
                "--request-timeout",
                "30",
                "--seed",
                "1",
                "--generation-deterministic",
                "--no-color",
            ],
            cwd=tmp,
            text=True,
            capture_output=True,
            timeout=seconds + 240,
            check=False,
        )
    report = done.stdout + done.stderr
    assert done.returncode == 0 and " passed" in report, report[-6000:]
    return report


def serve_logs(pattern: str) -> str:
    """What the Serve log files of this session matching ``pattern`` (e.g. ``replica_digits_*``)
    hold so far."""
    import glob

    import ray

    session = ray._private.worker.global_worker.node.get_session_dir_path()
    paths = sorted(glob.glob(os.path.join(session, "logs", "serve", f"{pattern}.log")))
    return "".join(open(p, errors="replace").read() for p in paths)
