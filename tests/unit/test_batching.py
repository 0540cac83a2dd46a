"""Dynamic batching: merge concurrent payloads along axis 0, split the result back; a lone
request runs at once (batches under concurrency: tests/integration/test_graphs.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from nodes.batching import Batcher, merge, split
from nodes.calls import Payload
from nodes.errors import RequestValidationError
from nodes.spec import BatchingSpec


def payload(rows: int, offset: int) -> dict[str, np.ndarray]:
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + offset
    ids = np.arange(rows, dtype=np.int64) + offset
    return {"x": x, "ids": ids}


def test_merge_concatenates_rows_and_counts_them() -> None:
    payloads = [payload(1, 0), payload(3, 100), payload(2, 200)]
    merged, sizes = merge(payloads)
    assert sizes == [1, 3, 2]
    assert list(merged) == ["x", "ids"]
    assert merged["x"].shape == (6, 3)
    assert merged["x"].dtype == np.float32
    np.testing.assert_array_equal(merged["ids"], np.array([0, 100, 101, 102, 200, 201]))
    np.testing.assert_array_equal(merged["x"][1], np.array([100, 101, 102], dtype=np.float32))


def test_merge_split_round_trip() -> None:
    payloads = [payload(2, 0), payload(1, 10), payload(4, 20), payload(1, 30)]
    merged, sizes = merge(payloads)
    pieces = split(merged, sizes)
    assert len(pieces) == len(payloads)
    for piece, original in zip(pieces, payloads, strict=True):
        assert list(piece) == list(original)
        for key in original:
            assert piece[key].dtype == original[key].dtype
            np.testing.assert_array_equal(piece[key], original[key])


def test_split_of_model_outputs() -> None:
    outputs = {
        "probabilities": np.arange(10, dtype=np.float32).reshape(5, 2),
        "label": [0, 1, 1, 0, 1],
    }
    pieces = split(outputs, [2, 0, 3])
    assert [p["probabilities"].shape for p in pieces] == [(2, 2), (0, 2), (3, 2)]
    np.testing.assert_array_equal(pieces[0]["label"], np.array([0, 1]))
    np.testing.assert_array_equal(pieces[2]["label"], np.array([1, 0, 1]))
    np.testing.assert_array_equal(
        pieces[2]["probabilities"], np.array([[4, 5], [6, 7], [8, 9]], dtype=np.float32)
    )


def test_merge_accepts_lists() -> None:
    merged, sizes = merge([{"x": [[1, 2]]}, {"x": [[3, 4], [5, 6]]}])
    assert sizes == [1, 2]
    np.testing.assert_array_equal(merged["x"], np.array([[1, 2], [3, 4], [5, 6]]))


def test_incompatible_shapes_are_a_request_error() -> None:
    payloads = [{"x": np.zeros((1, 3))}, {"x": np.zeros((2, 4))}]
    with pytest.raises(RequestValidationError) as info:
        merge(payloads)
    err = info.value
    assert err.field == "inputs.x"
    assert err.message.startswith("cannot batch tensors of shapes [(1, 3), (2, 4)]: ")
    assert err.status_code == 422


def test_incompatible_rank_is_a_request_error() -> None:
    payloads = [{"ids": np.zeros(2), "x": np.zeros((1, 3))}, {"ids": np.zeros(1), "x": np.zeros(3)}]
    with pytest.raises(RequestValidationError) as info:
        merge(payloads)
    assert info.value.field == "inputs.x"
    assert info.value.message.startswith("cannot batch tensors of shapes [(1, 3), (3,)]: ")


def _batcher(calls: list[int]) -> Batcher:
    async def infer(payload: Payload) -> Payload:
        calls.append(len(payload["x"]))
        await asyncio.sleep(0)
        return {"y": np.asarray(payload["x"]) * 2}

    return Batcher(BatchingSpec(max_batch_size=8, max_wait_ms=200), infer)


def test_a_lone_request_at_an_idle_model_does_not_wait_for_company() -> None:
    async def main() -> tuple[float, list[int]]:
        calls: list[int] = []
        batcher = _batcher(calls)
        start = time.perf_counter()
        for i in range(3):  # one after the other: never two inside at once
            out = await batcher({"x": np.asarray([[i]])})
            assert out["y"].tolist() == [[2 * i]]
        return time.perf_counter() - start, calls

    took, calls = asyncio.run(main())
    assert calls == [1, 1, 1]
    assert took < 0.2  # one 200 ms batching wait would exceed it; none is taken


def test_one_bad_request_fails_only_itself_inside_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # serve.batch reads its replica's max_ongoing_requests once, to warn about it.
    from types import SimpleNamespace

    from ray import serve

    replica = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=64))
    monkeypatch.setattr(serve, "get_replica_context", lambda: replica)

    async def infer(payload: Payload) -> Payload:
        x = np.asarray(payload["x"])
        if (x < 0).any():
            raise ValueError("negative input")
        await asyncio.sleep(0.01)
        return {"y": x * 2}

    async def main() -> list[Any]:
        batcher = Batcher(BatchingSpec(max_batch_size=8, max_wait_ms=50), infer)
        # Shapes that do not concatenate, and a value the model refuses, in one batch.
        payloads = [[[1]], [[2, 2]], [[-1]], [[3]]]
        calls = [batcher({"x": np.asarray(p)}) for p in payloads]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0]["y"].tolist() == [[2]]
    assert results[1]["y"].tolist() == [[4, 4]]
    assert isinstance(results[2], ValueError)
    assert results[3]["y"].tolist() == [[6]]


def test_a_request_past_its_deadline_is_dropped_before_inference() -> None:
    from nodes.errors import DeadlineExceededError

    seen: list[Any] = []

    async def infer(payload: Payload) -> Payload:
        seen.append(np.asarray(payload["x"]).tolist())
        return {"y": np.asarray(payload["x"])}

    async def main() -> Any:
        batcher = Batcher(BatchingSpec(max_batch_size=8, max_wait_ms=1), infer)
        return await batcher({"x": np.asarray([[1]])}, time.time() - 1, "mlp")

    with pytest.raises(DeadlineExceededError, match="'mlp'"):
        asyncio.run(main())
    assert seen == []
