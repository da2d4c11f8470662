"""Starting a local Ray: a stale `ray start` record is forgotten, a live one is kept."""

import socket

from pipeline.cluster import current_cluster_file, forget_dead_cluster


def test_a_record_of_a_dead_head_is_removed_and_a_live_one_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    record = current_cluster_file()
    assert record == tmp_path / "ray" / "ray_current_cluster"
    assert forget_dead_cluster() is None  # no record at all

    record.parent.mkdir(parents=True)
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        port = live.getsockname()[1]
        record.write_text(f"127.0.0.1:{port}")
        assert forget_dead_cluster() is None and record.exists()
    # The same port with nothing listening: a head killed without `ray stop`.
    assert forget_dead_cluster() == f"127.0.0.1:{port}" and not record.exists()

    record.write_text("not an address")
    assert forget_dead_cluster() is None and record.exists()  # not ours to judge
