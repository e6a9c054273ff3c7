"""The machine core runs in the browser's Python: Pyodide (CPython 3.14 on WebAssembly) in Node.

The project's pure-Python wheel is built, installed into the pinned npm Pyodide, and the
scenarios of ``pyodide/core_scenarios.py`` run there under Pyodide's asyncio (the JS event loop).
The same scenarios also run in this CPython, so each expectation below is checked against both
runtimes: the browser must behave exactly like the server. The scenario script only observes;
every verdict is here, one test per scenario, so a failure names it and shows what was seen.

Node and ``node_modules/pyodide`` are required, not optional: ``task setup`` installs them (CI
does). When they are missing the tests fail and say so rather than being skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "pyodide"
SCENARIOS = HERE / "core_scenarios.py"
RUNNER = HERE / "run.mjs"
PYODIDE = REPO / "node_modules" / "pyodide" / "pyodide.mjs"
NODE_TIMEOUT = 120  # loading Pyodide takes about 5 s here
CPYTHON_TIMEOUT = 60

EXPECTED_SCENARIOS = {
    "imports",
    "py314_compat",
    "relations_dry_water_wet",
    "relations_require",
    "relations_add_remove",
    "unknown_state",
    "handler_order",
    "handler_negotiation_cancel",
    "multi_ticks",
    "queue_from_handler",
    "events_kept_or_reused",
    "when_from_task",
    "fork_cancelled_when_state_ends",
    "fork_error_becomes_exception",
    "warnings",
}


def _json_line(stdout: str, what: str) -> dict[str, Any]:
    """The last line of ``stdout`` that is a JSON object (the scenarios print exactly one)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    pytest.fail(f"{what} printed no JSON results line; stdout was:\n{stdout[-2000:]}")


@pytest.fixture(scope="module")
def pyodide_results(project_wheel: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Pyodide tests need Node.js (`node` is not on PATH): install it, then run "
                    "`task setup` (CI installs both)")  # fmt: skip
    if not PYODIDE.is_file():
        pytest.fail(f"the pinned Pyodide is missing ({PYODIDE.relative_to(REPO)}): run "
                    "`task setup` (npm ci; CI does it)")  # fmt: skip
    try:
        proc = subprocess.run(
            [node, str(RUNNER), str(project_wheel), str(SCENARIOS)],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the Pyodide run did not finish in {NODE_TIMEOUT} s; stderr:\n{err.stderr}")
    if proc.returncode != 0:
        pytest.fail(f"the Pyodide run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return _json_line(proc.stdout, "the Pyodide run")


@pytest.fixture(scope="module")
def cpython_results() -> dict[str, Any]:
    """The same scenarios in a fresh CPython process (fresh, so the import check means
    something: this pytest process has trio loaded already)."""
    # this checkout's package, whether or not it is installed
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(SCENARIOS)],
        capture_output=True,
        text=True,
        timeout=CPYTHON_TIMEOUT,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _json_line(proc.stdout, "the CPython run")


@pytest.fixture(params=["pyodide", "cpython"])
def results(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(f"{request.param}_results")


def scenario(results: dict[str, Any], name: str) -> Any:
    assert name in results, f"scenario {name} did not report"
    got = results[name]
    if isinstance(got, dict) and "error" in got:
        pytest.fail(f"scenario {name} raised:\n{got['error']}")
    return got


# -- the runtime ---------------------------------------------------------------------------------


def test_every_scenario_reported(results: dict[str, Any]) -> None:
    assert set(results) == EXPECTED_SCENARIOS


def test_runs_in_pyodide_python_314(pyodide_results: dict[str, Any]) -> None:
    env = scenario(pyodide_results, "py314_compat")
    assert env["platform"] == "emscripten"
    assert env["python"] == [3, 14]


def test_core_files_compile_cleanly(results: dict[str, Any]) -> None:
    """Every core module compiles with warnings as errors (3.14's new SyntaxWarnings included),
    and running the scenarios raised no warning from the package."""
    env = scenario(results, "py314_compat")
    assert {"machine.py", "schema.py", "waiting.py", "aio.py"} <= set(env["files"])
    assert env["problems"] == []
    assert results["warnings"] == []


def test_import_loads_no_event_loop_library(results: dict[str, Any]) -> None:
    assert scenario(results, "imports") == {
        "trio_loaded": False,
        "asyncio_imported_by_machines": False,
        "cbor2_loaded": False,  # so the browser needs no cbor2 wheel for the core
    }


# -- relations -----------------------------------------------------------------------------------


def test_relations_dry_water_wet(results: dict[str, Any]) -> None:
    got = scenario(results, "relations_dry_water_wet")
    assert got["add_dry"] == "EXECUTED"
    assert got["after_dry"] == {"Dry": 1, "Water": 0, "Wet": 0}
    assert got["add_water"] == "EXECUTED"
    assert got["after_water"] == {"Dry": 2, "Water": 1, "Wet": 1}  # (Water:1 Wet:1) [Dry:2]
    assert got["active"] == ["Water", "Wet"]


def test_relations_require(results: dict[str, Any]) -> None:
    assert scenario(results, "relations_require") == {
        "add_foo": "CANCELED",
        "active_1": [],
        "add_foo_bar": "EXECUTED",
        "active_2": ["Bar", "Foo"],
        "remove_bar": "EXECUTED",
        "active_3": [],
    }


def test_relations_add_remove(results: dict[str, Any]) -> None:
    assert scenario(results, "relations_add_remove") == {
        "ex2_set_c": ["C", "D"],
        "ex2_set_ac": ["EXECUTED", ["A", "C"]],
        "ex3_remove_b": ["EXECUTED", ["A", "C"]],
        "ex4_two_hops": ["EXECUTED", ["X", "Y", "Z"]],
        "ex5_add_a": ["EXECUTED", ["A", "C"]],
    }


def test_unknown_state_raises(results: dict[str, Any]) -> None:
    assert scenario(results, "unknown_state") == {"raised": "ValueError", "names_it": True}


# -- handlers, clocks, queue ---------------------------------------------------------------------


def test_handler_order(results: dict[str, Any]) -> None:
    got = scenario(results, "handler_order")
    assert got["calls"] == [
        "AExit", "BExit", "CEnter", "AC", "BC", "AnyEnter", "AEnd", "BEnd", "CState", "AnyState",
    ]  # fmt: skip
    assert got["result"] == "EXECUTED"
    assert got["active"] == ["C"]


def test_events_kept_or_reused(results: dict[str, Any]) -> None:
    """Handlers' events are reused while nobody keeps one, and a kept one is never reused:
    the reference count that tells them apart differs between CPython 3.11 and 3.14."""
    got = scenario(results, "events_kept_or_reused")
    assert got["spare_refs"] in (2, 3)
    assert got["made_unkept"] == 1  # one event for 5 transitions of 2 handlers each
    # a new event after each kept one: for CState, and for AEnter after the second BState
    assert got["made"] == ["AEnter", "CState", "AEnter"]
    assert got["kept"] == [["BState", {"b": 1}, {"b": 1}], ["BState", {"b": 4}, {"b": 4}]]
    assert got["seen"] == [["CState", {"c": 2}, None], ["AEnter", {"i": 9}], ["AState", {"i": 9}]]


def test_handler_negotiation_cancel(results: dict[str, Any]) -> None:
    assert scenario(results, "handler_negotiation_cancel") == {
        "set_d": "CANCELED",
        "add_d": "CANCELED",
        "calls": ["DEnter", "DEnter"],
        "active": ["A"],
    }


def test_multi_ticks(results: dict[str, Any]) -> None:
    got = scenario(results, "multi_ticks")
    assert got["ticks"] == [
        [1, 1, 0, 0],
        [1, 3, 0, 0],  # B is Multi and called: +2
        [1, 5, 1, 0],
        [2, 6, 2, 1],
        [2, 6, 3, 1],
        [2, 6, 4, 1],
        [3, 7, 4, 1],
        [3, 7, 5, 1],
    ]
    assert got["sum"] == 16
    assert got["clock"] == {"A": 3, "B": 7, "C": 5, "D": 1, "Exception": 0}
    assert got["tick_a"] == 3


def test_queue_from_handler(results: dict[str, Any]) -> None:
    got = scenario(results, "queue_from_handler")
    assert got["queue_tick_at_start"] == 2
    assert got["in_handler"] == 4  # the queue tick at which Add C will run
    assert got["active_in_handler"] == ["A"]  # negotiation still sees the old states
    assert got["queue_len_in_handler"] == 1
    assert got["set_b"] == "EXECUTED"
    # Add C runs after Set B finished, as its own transition
    assert got["calls"] == [
        "AExit", "BEnter", "AB", "AnyEnter", "AEnd", "BState", "AnyState",
        "CEnter", "BB", "BC", "AnyEnter", "CState", "AnyState",
    ]  # fmt: skip
    assert got["active"] == ["B", "C"]
    assert got["queue_tick_at_end"] == 4
    assert got["queue_len_at_end"] == 0


# -- waiting and forking under the runtime's asyncio ---------------------------------------------


def test_when_and_when_not_from_another_task(results: dict[str, Any]) -> None:
    got = scenario(results, "when_from_task")
    assert got["pending_before"] == [False, False]
    assert {"A", "B"} <= set(got["when_ab_saw"])
    assert "D" not in got["when_not_d_saw"]
    assert got["when_a_now_done"] is True
    assert got["when_not_c_now_done"] is True
    assert got["tick_a_after_when_ticks"] == 3


def test_fork_cancelled_when_state_ends(results: dict[str, Any]) -> None:
    assert scenario(results, "fork_cancelled_when_state_ends") == {
        "events": ["fork True", "started 7", "alive after Other: True", "cancelled"],
        "is_err": False,
        "active": ["Other"],
    }


def test_fork_error_becomes_exception(results: dict[str, Any]) -> None:
    assert scenario(results, "fork_error_becomes_exception") == {
        "forked": True,
        "is_err": True,
        "err": "ValueError('boom in the browser')",
    }
