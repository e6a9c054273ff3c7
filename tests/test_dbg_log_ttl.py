"""``--log-ops-ttl`` with ``--max-mem`` (C.4 GC, step one): over the limit, the log lines
above level 2 older than the TTL go first, from transitions read and not read yet alike;
the history is cut in half only when that did not free enough."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_dbg_ui import Recorder, _mach

from cli.dbg import parse_duration
from dbg.collector import Collector, rss_bytes
from dbg.dump import read_dump
from dbg.ui.live import LockedCollector

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[1]


def logged(n: int, make: type[Collector] = Collector, **kw) -> Collector:
    """``n`` transitions of m1 at log level 3: each has an ops line ``[add] ...`` (level 3)
    and a changes line ``[state] ...`` (level 2); half read, half still pending."""
    rec = Recorder()
    rec.collector = c = make(**kw)
    rec.conn = c.connect()
    m = rec.attach(_mach("m1"), full=False)
    for i in range(n):
        m.add("Msg", {"x": i})
        if i == n // 2:
            rec.flush()
            c.machines["m1"].read(n // 4)  # some parsed, some still in their block
    rec.flush()
    return c


def levels(c: Collector) -> dict[int, int]:
    out: dict[int, int] = {}
    for tx in c.machines["m1"].txs:
        for e in tx.log_entries + tx.pre_log_entries:
            out[e.level] = out.get(e.level, 0) + 1
    return out


@pytest.mark.parametrize("make", [Collector, LockedCollector], ids=["headless", "ui"])
def test_old_ops_lines_go_first_then_the_history(make: type[Collector]) -> None:
    c = logged(400, make, max_mem=1, log_ttl=0.0)  # over 1 byte; every line is old
    rec = c.machines["m1"]
    assert rec._pending.n and rec._txs  # both kinds are there
    dropped = c.check_memory()
    assert c.logs_dropped == 400  # every [add] line, parsed or pending
    # 1 byte is never reached: the history is halved as before
    assert dropped == 200 and len(rec) == 200
    assert levels(c) == {2: 200}  # the [state] lines stay


def test_lines_younger_than_the_ttl_stay() -> None:
    c = logged(100, max_mem=1, log_ttl=3600.0)
    c.check_memory()
    assert c.logs_dropped == 0 and c.trimmed == 50
    assert levels(c) == {2: 50, 3: 50}


def test_enough_freed_by_the_lines_keeps_the_history() -> None:
    c = logged(300, log_ttl=0.0)
    for tx in c.machines["m1"].txs:  # long ops lines: ~6 MB of text
        for e in tx.log_entries:
            if e.level == 3:
                e.text += "x" * 20_000
    c.max_mem = rss_bytes() - (1 << 20)  # 1 MB over
    assert c.check_memory() == 0
    assert c.logs_dropped == 300 and c.trimmed == 0 and len(c.machines["m1"]) == 300
    # freed memory is reused: no cut until the process grows past what it was
    assert c.check_memory() == 0 and c.trimmed == 0


def test_durations() -> None:
    assert [parse_duration(d) for d in ("1h", "30m", "1h30m", "90s", "500ms", "2.5")] == [
        3600,
        1800,
        5400,
        90,
        0.5,
        2.5,
    ]
    for bad in ("1 hour", "h", "-1s", "1h x", ""):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_cli_bad_ttl_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "--log-ops-ttl", "soon"],
        env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["am dbg: bad --log-ops-ttl: 'soon' is not a "
                                             "duration such as 1h, 30m, 90s"]  # fmt: skip


PRODUCER = """
import sys, time
from machines import Machine, State
m = Machine({"Msg": State(multi=True)}, id="ttl", log_level=3, logger=lambda *_: None)
for i in range(200):
    m.add("Msg")
print("ready", flush=True)
sys.stdin.read()
"""


def test_headless_low_max_mem(tmp_path: Path) -> None:
    """`am dbg --headless --max-mem 1 --log-ops-ttl 0.2s`: the memory watch drops the old
    ops lines (the exit line counts them) and the dump keeps the level 2 ones."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "AM_LOG": "3"}
    dbg = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", "--headless", "-l", "127.0.0.1:0",
         "--ws-port", "0", "-d", str(tmp_path), "--max-mem", "1", "--log-ops-ttl", "0.2s"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    prod = None
    try:
        assert dbg.stdout is not None
        line = dbg.stdout.readline()
        port = line.split("collecting on 127.0.0.1:")[1].split(",")[0].split(";")[0]
        env["AM_DBG_ADDR"] = f"127.0.0.1:{port}"
        prod = subprocess.Popen([sys.executable, "-c", PRODUCER], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        assert prod.stdout is not None and prod.stdout.readline() == "ready\n"
        assert dbg.stderr is not None
        # the watch runs every second: wait for its warning, not for a guessed time
        for err_line in dbg.stderr:
            if "log lines above level 2" in err_line:
                break
        dbg.send_signal(signal.SIGINT)
        _, err = dbg.communicate(timeout=30)
        assert dbg.returncode == 0, err
    finally:
        for p in (prod, dbg):
            if p is not None:
                p.kill()
                p.wait(10)
    assert " old log lines)" in err
    (m,) = read_dump(tmp_path / "am-dbg-dump.cbor.br")
    lv = {e.level for tx in m.txs for e in tx.log_entries + tx.pre_log_entries}
    assert lv == {2}
