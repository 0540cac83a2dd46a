"""Shadow traffic: mirror decision, in-flight bound, output comparison, rotating sample log."""

from __future__ import annotations

import json
import os
import random
import threading

import pytest

from routing.config import SampleLogConfig, ShadowConfig
from routing.shadow import InFlightLimiter, MirrorDecider
from routing.shadow_compare import ShadowComparator
from routing.shadow_log import RotatingJsonlWriter


def test_mirror_fraction() -> None:
    # sd of the share over 10,000 draws at p = 0.25 is 0.0043: +-2 points is ~4.6 sd.
    decider = MirrorDecider(0.25, random.Random(11))
    share = sum(decider.should_mirror() for _ in range(10_000)) / 10_000
    assert abs(share - 0.25) <= 0.02
    assert not any(MirrorDecider(0.0, random.Random(1)).should_mirror() for _ in range(1000))
    assert all(MirrorDecider(1.0, random.Random(1)).should_mirror() for _ in range(1000))
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        MirrorDecider(1.5)


def test_in_flight_limiter_drops_and_counts_the_excess() -> None:
    limiter = InFlightLimiter(2)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.stats() == {"limit": 2, "in_flight": 2, "started": 2, "dropped": 2}
    limiter.release()
    assert limiter.try_acquire()
    limiter.release()
    limiter.release()
    assert limiter.stats() == {"limit": 2, "in_flight": 0, "started": 3, "dropped": 2}
    with pytest.raises(RuntimeError, match="without a matching try_acquire"):
        limiter.release()
    zero = InFlightLimiter(0)
    assert not zero.try_acquire()
    assert zero.dropped == 1


def test_in_flight_limiter_holds_under_threads() -> None:
    limiter = InFlightLimiter(3)
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal peak
        for _ in range(500):
            if limiter.try_acquire():
                with lock:
                    peak = max(peak, limiter.in_flight)
                limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = limiter.stats()
    assert peak <= 3
    assert stats["in_flight"] == 0
    assert stats["started"] + stats["dropped"] == 8 * 500


def test_label_agreement_rate() -> None:
    comparator = ShadowComparator()
    for primary, shadow in [(3, 3), (3, 4), ("cat", "cat"), (True, 1)]:
        comparator.compare({"label": primary}, {"label": shadow})
    # True vs 1: different kinds of label, counted as disagreement.
    assert comparator.overall.labels == 4
    assert comparator.overall.agreement_rate == 0.5
    assert comparator.compared == 4
    assert comparator.by_field["label"].agree == 2


def test_numeric_mean_absolute_difference() -> None:
    comparator = ShadowComparator()
    pair = comparator.compare(
        {"probs": [[0.25, 0.75]], "score": 1.0}, {"probs": [[0.5, 0.5]], "score": 2}
    )
    assert pair.numbers == 3
    assert pair.mean_abs_diff == pytest.approx((0.25 + 0.25 + 1.0) / 3)
    assert pair.max_abs_diff == 1.0
    comparator.compare({"probs": [[0.0, 1.0]], "score": 1.0}, {"probs": [[0.0, 1.0]], "score": 1.0})
    assert comparator.by_field["probs"].mean_abs_diff == pytest.approx(0.5 / 4)
    assert comparator.overall.mean_abs_diff == pytest.approx(1.5 / 6)
    assert comparator.overall.labels == 0


def test_batched_labels_nested_fields_and_mismatches() -> None:
    comparator = ShadowComparator()
    pair = comparator.compare(
        {"out": {"labels": [1, 2, 3], "probs": [0.1, 0.9]}, "only_primary": 1},
        {"out": {"labels": [1, 2, 4], "probs": [0.1, 0.8, 0.1]}, "only_shadow": "x"},
    )
    assert (pair.labels, pair.agree) == (3, 2)
    # probs shape (2,) vs (3,), and one field on each side only.
    assert pair.mismatched == 3
    assert set(comparator.by_field) == {"out.labels", "out.probs", "only_primary", "only_shadow"}
    assert comparator.by_field["out.probs"].mismatched == 1
    comparator.compare({"x": [0.5, "a"]}, {"x": [0.5, 0.5]})
    assert comparator.by_field["x"].to_dict()["mismatched"] == 1
    assert comparator.by_field["x"].numbers == 1


def test_selected_fields_only() -> None:
    comparator = ShadowComparator(fields=["label", "meta.version"])
    comparator.compare(
        {"label": 1, "probs": [0.5], "meta": {"version": "a"}},
        {"label": 1, "probs": [0.1], "meta": {}},
    )
    assert set(comparator.by_field) == {"label", "meta.version"}
    assert comparator.by_field["label"].agreement_rate == 1.0
    assert comparator.by_field["meta.version"].mismatched == 1
    assert comparator.overall.numbers == 0


def test_comparator_merge_and_round_trip() -> None:
    a, b, both = ShadowComparator(), ShadowComparator(), ShadowComparator()
    pairs = [({"y": 1, "p": [0.5, 0.5]}, {"y": i % 2, "p": [0.25 * i, 0.5]}) for i in range(6)]
    for i, (primary, shadow) in enumerate(pairs):
        (a if i < 3 else b).compare(primary, shadow)
        both.compare(primary, shadow)
    a.record_error()
    both.record_error()
    a.merge(ShadowComparator.from_dict(json.loads(json.dumps(b.to_dict()))))
    assert a.to_dict() == both.to_dict()
    assert a.shadow_errors == 1
    assert "compared=6" in repr(a)


def test_config_defaults() -> None:
    config = ShadowConfig.model_validate(
        {"fraction": 0.1, "max_in_flight": 4, "sample_log": {"path": "/tmp/x.jsonl"}}
    )
    assert config.sample_log is not None and config.sample_log.max_files == 5
    with pytest.raises(ValueError):
        ShadowConfig.model_validate({"fraction": 2})


def read_lines(path: str) -> list[dict[str, int]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_rotating_writer_bounds_size_and_file_count(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "logs", "shadow.jsonl")
    with RotatingJsonlWriter(path, max_bytes=200, max_files=3) as writer:
        for i in range(100):
            assert writer.write({"i": i, "pad": "x" * 20})  # 33-34 bytes a line
        assert writer.written == 100
        files = writer.files()
    assert files == [path, f"{path}.1", f"{path}.2"]
    assert not os.path.exists(f"{path}.3")
    assert all(os.path.getsize(f) <= 200 for f in files)
    # Oldest file first, the lines run on without a gap and end with the last record.
    seen = [r["i"] for f in reversed(files) for r in read_lines(f)]
    assert seen == list(range(seen[0], 100))
    assert len(seen) >= 12  # at least 2 full files of 5 lines, plus the current one


def test_rotating_writer_drops_oversized_lines_and_appends_after_reopen(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "s.jsonl")
    writer = RotatingJsonlWriter.from_config(
        SampleLogConfig(path=path, max_bytes=1024, max_files=1)
    )
    assert not writer.write({"big": "x" * 2000})
    assert writer.dropped == 1
    assert writer.write({"i": 0})
    writer.close()
    reopened = RotatingJsonlWriter(path, max_bytes=1024, max_files=1)
    assert reopened.write({"i": 1})
    assert [r["i"] for r in read_lines(path)] == [0, 1]
    for i in range(2, 200):
        reopened.write({"i": i, "pad": "y" * 30})
    reopened.close()
    # max_files=1: the file is started afresh when full, never more than one file.
    assert reopened.files() == [path]
    assert os.path.getsize(path) <= 1024
    assert read_lines(path)[-1]["i"] == 199
    with pytest.raises(ValueError):
        RotatingJsonlWriter(path, max_files=0)
