"""The sans-IO aRPC protocol on its own: two connection objects wired by hand, no network."""

from __future__ import annotations

import random

import cbor2
import pytest

from machines.rpc import protocol as p

NAMES = ["Exception", "A", "B", "C", "D", "ErrOnClient"]
SCHEMA = {
    "Exception": {"multi": True},
    "A": {"auto": True, "require": ["C"]},
    "B": {"multi": True, "add": ["C"]},
    "C": {"after": ["D"]},
    "D": {"add": ["C", "B"]},
    "ErrOnClient": {"require": ["Exception"]},
}


class Source:
    """A stand-in for a source machine's exported clock."""

    def __init__(self, names=NAMES, schema=SCHEMA):
        self.names = list(names)
        self.schema = p.schema_to_wire(schema)
        self.time = [0] * len(names)
        self.q = 1
        self.m = 0

    def export(self):
        return p.SourceExport("src", self.names, list(self.time), self.q, self.m, self.schema)

    def tick(self, *names, by=1):
        for n in names:
            self.time[self.names.index(n)] += by
        self.q += 1


def pump(a, b):
    """Move bytes from a to b; return b's events."""
    return b.receive_data(a.data_to_send())


def handshake(src, **kw):
    cli = p.ClientConnection("c1", **kw)
    srv = p.ServerConnection()
    cli.hello()
    (hello,) = pump(cli, srv)
    assert isinstance(hello, p.HelloReceived)
    srv.accept_hello(hello.seq, src.export())
    events = pump(srv, cli)
    return cli, srv, events


def test_frame_roundtrip_and_split_reads():
    frames = p.encode_frame([1, 2, "a", [1]]) + p.encode_frame([0, "u", 1, 0, 5])
    reader = p.FrameReader()
    items = []
    for i in range(len(frames)):  # one byte at a time
        items += reader.feed(frames[i : i + 1])
    assert items == [[1, 2, "a", [1]], [0, "u", 1, 0, 5]]
    assert reader.pending == 0


def test_oversized_frame_is_refused_both_ways():
    with pytest.raises(ValueError, match="exceeds the limit"):
        p.encode_frame(["x" * 200], max_frame=100)
    with pytest.raises(p.ProtocolError, match="exceeds the limit of 100"):
        p.FrameReader(max_frame=100).feed(p.HEADER.pack(101))


def test_handshake_sends_schema_only_when_hashes_differ():
    src = Source()
    cli, srv, events = handshake(src)
    assert isinstance(events[0], p.HandshakeDone)
    assert events[0].schema == src.schema
    assert cli.mirror.names == NAMES and cli.remote_id == "src"
    # same schema on the client: hash matches, no schema on the wire
    cli2, _, events2 = handshake(src, schema=SCHEMA)
    assert events2[0].schema is None
    assert cli2.schema == src.schema
    # schema hash ignores list order
    shuffled = dict(SCHEMA, D={"add": ["B", "C"]})
    assert p.schema_hash(p.schema_to_wire(shuffled)) == p.schema_hash(src.schema)


def test_version_mismatch_is_a_clear_error():
    srv = p.ServerConnection()
    srv.receive_data(p.encode_frame([1, 1, "h", {"v": 99, "id": "c"}]))
    kind, seq, msg = cbor2.loads(srv.data_to_send()[4:])
    assert (kind, seq) == (p.ERROR, 1)
    assert "protocol version mismatch" in msg and "99" in msg


def test_mutation_round_trip_carries_diff_and_source_names():
    src = Source()
    cli, srv, _ = handshake(src, source_id="bar")
    seq = cli.mutate(p.MUT_ADD, ["A", "C"], {"msg": "hi"})
    (ev,) = pump(cli, srv)
    assert ev == p.MutationRequested(seq, p.MUT_ADD, ["A", "C"], {"msg": "hi"}, None)
    assert srv.source_id == "bar" and srv.client_id == "c1"
    src.tick("A", "C")
    srv.respond_mutation(ev.seq, 0, src.time, src.q, src.m)
    events = pump(srv, cli)
    assert isinstance(events[0], p.ClockChanged)
    assert events[1] == p.MutationDone(seq, 0)
    assert cli.mirror.time == src.time and cli.mirror.queue_tick == src.q


def test_round_trip_is_under_40_bytes_and_notification_under_20():
    src = Source()
    cli, srv, _ = handshake(src)
    for _ in range(300):  # seqs above 255 take 3 bytes
        cli.mutate(p.MUT_ADD, ["A", "C"])
        (ev,) = pump(cli, srv)
        srv.respond_mutation(ev.seq, 0, src.time, src.q, src.m)
        pump(srv, cli)
    cli.mutate(p.MUT_ADD, ["A", "C"])
    req = cli.data_to_send()
    (ev,) = srv.receive_data(req)
    src.tick("D")
    srv.respond_mutation(ev.seq, 0, src.time, src.q, src.m)
    resp = srv.data_to_send()
    assert len(req) + len(resp) <= 40, (len(req), len(resp))
    cli.receive_data(resp)
    cli.add_ns(["A", "C"])
    assert len(cli.data_to_send()) <= 20
    src.tick("B")
    assert srv.push(src.time, src.q, src.m)
    push = srv.data_to_send()
    assert len(push) <= 20
    cli.receive_data(push)
    assert cli.mirror.time == src.time


def test_push_skips_when_nothing_changed():
    src = Source()
    cli, srv, _ = handshake(src)
    assert not srv.push(src.time, src.q, src.m)
    assert srv.data_to_send() == b""


def test_large_clocks_cost_no_more():
    src = Source()
    src.time[1] = src.time[3] = 1_000_001
    cli, srv, _ = handshake(src)
    src.tick("A")
    srv.push(src.time, src.q, src.m)
    data = srv.data_to_send()
    assert len(data) <= 16
    cli.receive_data(data)
    assert cli.mirror.time[1] == 1_000_002


def test_checksum_mismatch_triggers_full_sync_and_drops_stale_diffs():
    src = Source()
    cli, srv, _ = handshake(src)
    src.tick("A")
    srv.push(src.time, src.q, src.m)
    frame = bytearray(srv.data_to_send())
    frame[-1] ^= 1  # corrupt the delta: the checksum no longer agrees
    assert cli.receive_data(bytes(frame)) == []
    assert cli.syncing and cli.mirror.time[1] == 0
    # a push in flight before the sync answer is relative to a replaced baseline: dropped
    src.tick("B")
    srv.push(src.time, src.q, src.m)
    assert pump(srv, cli) == []
    (sync,) = pump(cli, srv)
    assert isinstance(sync, p.SyncRequested)
    srv.respond_sync(sync.seq, src.time, src.q, src.m)
    ev, done = pump(srv, cli)
    assert done == p.SyncDone(sync.seq)
    assert ev.full and cli.mirror.time == src.time and not cli.syncing
    src.tick("C")
    srv.push(src.time, src.q, src.m)
    pump(srv, cli)
    assert cli.mirror.time == src.time


def test_selective_sync_allowed_and_skipped():
    src = Source()
    src.time[3] = 2  # C ticked before connecting
    opts = p.SyncOptions(allowed=["A", "B", "C"], skipped=["C"])
    cli, srv, _ = handshake(src, options=opts)
    assert cli.mirror.names == NAMES
    assert cli.mirror.time == [0, 0, 0, 0, 0, 0]
    src.tick("A")
    src.tick("B", "C")
    src.tick("D")
    srv.push(src.time, src.q, src.m)
    pump(srv, cli)
    assert cli.mirror.time == [0, 1, 1, 0, 0, 0]


def test_selective_sync_no_schema_uses_client_bound_indexes():
    src = Source()
    cli, srv, events = handshake(src, options=p.SyncOptions(allowed=["C"], no_schema=True))
    assert events[0].schema is None and cli.schema is None
    assert cli.mirror.names == ["C"]
    src.tick("C", "A")
    srv.push(src.time, src.q, src.m)
    pump(srv, cli)
    assert cli.mirror.time == [1]
    seq = cli.mutate(p.MUT_REMOVE, ["C"])
    (ev,) = pump(cli, srv)
    assert ev.states == ["C"] and ev.seq == seq


def test_shallow_clocks_flip_only():
    src = Source()
    src.time[1] = 7  # A active, high tick
    cli, srv, _ = handshake(src, options=p.SyncOptions(shallow=True))
    assert cli.mirror.time[1] == 1
    src.tick("B", by=1)
    src.tick("B", by=2)  # a multi re-activation is invisible
    srv.push(src.time, src.q, src.m)
    pump(srv, cli)
    assert cli.mirror.time[2] == 1
    src.tick("A")  # 8: inactive
    srv.push(src.time, src.q, src.m)
    pump(srv, cli)
    assert cli.mirror.time[1] == 2 and not cli.syncing


def test_unknown_state_name_fails_locally():
    cli, _, _ = handshake(Source())
    with pytest.raises(ValueError, match="'Nope' is not defined for src"):
        cli.mutate(p.MUT_ADD, ["Nope"])


def test_payload_and_schema_change_reach_the_client():
    src = Source()
    cli, srv, _ = handshake(src)
    srv.send_payload("TestPayload", {"x": 1}, "src", "tok")
    (ev,) = pump(srv, cli)
    assert ev == p.PayloadReceived("TestPayload", {"x": 1}, "src", "tok")
    src.names.append("E")
    src.schema["E"] = {}
    src.time.append(1)
    srv.schema_changed(src.export())
    events = pump(srv, cli)
    assert any(isinstance(e, p.SchemaChanged) for e in events)
    assert cli.mirror.names[-1] == "E" and cli.mirror.time[-1] == 1


@pytest.mark.parametrize(
    "frame, reason",
    [
        ([1, 5, "zz"], "unknown method"),
        ([1, 5, "a", [99]], "unknown state index 99"),
        ([1, 5, "a", ["A"]], "unknown state index"),
        ([1, 5, "a", [1], [1, 2]], "args must be a map"),
        ([1, 5, "a", [1], None, "x"], "mutation source"),
        ([1, 5, "a", []], "non-empty list"),
        ([1, 5, 7], "bad method"),
        ([0, "a", [1]], "wrong way"),
        ([1, 5, "h", {"v": 1, "id": "x"}], "hello already received"),
    ],
)
def test_bad_requests_get_error_responses(frame, reason):
    _, srv, _ = handshake(Source())
    assert srv.receive_data(p.encode_frame(frame)) == []
    kind, seq, msg = cbor2.loads(srv.data_to_send()[4:])
    assert kind == p.ERROR
    assert seq == (frame[1] if frame[0] == p.REQUEST else 0)
    assert reason in msg


@pytest.mark.parametrize(
    "data, reason",
    [
        (p.HEADER.pack(3) + b"\xff\xff\xff", "malformed CBOR"),
        (p.encode_frame({"a": 1}), "not an aRPC frame"),
        (p.encode_frame([9, 1]), "unknown frame kind"),
        (p.encode_frame([1, -1, "a"]), "bad sequence"),
        (p.encode_frame([2, 77]), "unknown call 77"),
        (p.HEADER.pack(0), "empty frame"),
    ],
)
def test_garbage_is_fatal(data, reason):
    _, srv, _ = handshake(Source())
    with pytest.raises(p.ProtocolError, match=reason):
        srv.receive_data(data)


def test_fuzz_sans_io_never_raises_anything_but_protocol_error():
    rng = random.Random(1234)
    atoms = [0, 1, 2, 3, -1, 2**40, "a", "h", "y", "A", "x", None, True, 1.5, b"\x00", [], {}]
    for _ in range(3000):
        _, srv, _ = handshake(Source())
        if rng.random() < 0.5:
            item = [rng.choice(atoms) for _ in range(rng.randint(0, 6))]
            if rng.random() < 0.5:
                item[2:3] = [[rng.choice(atoms) for _ in range(3)]]
            data = p.encode_frame(item)
        else:
            data = rng.randbytes(rng.randint(1, 40))
        try:
            srv.receive_data(data)
        except p.ProtocolError:
            pass


def test_fuzz_client_side_never_raises_anything_but_protocol_error():
    rng = random.Random(4321)
    atoms = [0, 1, 2, 3, -1, 7, 2**40, "u", "p", "S", "x", None, True, 1.5, [], {}, [1, 2]]
    src = Source()
    for _ in range(3000):
        cli, srv, _ = handshake(src)
        cli.mutate(p.MUT_ADD, ["A"])  # a pending call for responses to hit
        if rng.random() < 0.7:
            item = [rng.choice([0, 2, 3]), rng.choice(atoms + [1])]
            item += [rng.choice(atoms) for _ in range(rng.randint(0, 6))]
            data = p.encode_frame(item)
        else:
            data = rng.randbytes(rng.randint(1, 40))
        try:
            events = cli.receive_data(data)
        except p.ProtocolError:
            continue
        for ev in events:  # whatever got through left a consistent mirror
            if isinstance(ev, p.ClockChanged):
                assert len(ev.after) == len(cli.mirror.names)
        assert len(cli.mirror.time) == len(NAMES)


def test_per_mutation_mode_sends_one_entry_per_source_mutation():
    src = Source()
    cli, srv, _ = handshake(src, options=p.SyncOptions(mutations=True, shallow=True))
    assert srv.options.mutations and not srv.options.shallow  # per-mutation diffs are deep
    src.tick("B", "C")
    srv.record(p.MUT_ADD, ["B"], src.time, src.q, src.m)
    src.tick("A")
    srv.record(p.MUT_ADD, ["A"], src.time, src.q, src.m)
    src.q += 1  # a canceled mutation: queue tick only
    srv.record(p.MUT_ADD, ["D"], src.time, src.q, src.m)
    assert srv.push(src.time, src.q, src.m)
    events = pump(srv, cli)
    assert [e.mutation for e in events] == [(0, ["B"]), (0, ["A"]), (0, ["D"])]
    assert events[0].after == [0, 0, 1, 1, 0, 0] and cli.mirror.time == src.time
    assert cli.mirror.queue_tick == src.q and not cli.syncing
    # a client's mutation: its entries ride on the response, plus a catch-up for unrecorded change
    seq = cli.mutate(p.MUT_ADD, ["D"])
    (ev,) = pump(cli, srv)
    src.tick("D")
    srv.record(p.MUT_ADD, ["D"], src.time, src.q, src.m)
    src.tick("B")  # not recorded
    srv.respond_mutation(ev.seq, 0, src.time, src.q, src.m)
    events = pump(srv, cli)
    assert [e.mutation for e in events[:-1]] == [(0, ["D"]), (None, [])]
    assert events[-1] == p.MutationDone(seq, 0) and cli.mirror.time == src.time
