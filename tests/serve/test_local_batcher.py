"""The in-process micro-batcher: callers on many event loops at once never lose a request."""

from __future__ import annotations

import asyncio
import threading

from dpfusion_chains.serve.local import MicroBatcher


def test_callers_on_separate_loops_all_get_their_own_results() -> None:
    seen_batches: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        seen_batches.append(list(items))
        return [2 * i for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(double, max_batch_size=4, wait_s=0.005)
    results: dict[int, int] = {}
    start = threading.Barrier(6)

    def caller(i: int) -> None:
        start.wait()
        results[i] = asyncio.run(batcher.submit(i))  # each thread has its own event loop

    for round_ in range(15):
        threads = [threading.Thread(target=caller, args=(round_ * 6 + k,), daemon=True) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads), "a caller is still waiting: its request was lost"
    assert results == {i: 2 * i for i in range(90)}
    assert all(len(b) <= 4 for b in seen_batches)


def test_callers_on_one_loop_share_a_batch() -> None:
    batches: list[list[int]] = []

    def echo(items: list[int]) -> list[int]:
        batches.append(list(items))
        return items

    batcher: MicroBatcher[int, int] = MicroBatcher(echo, max_batch_size=8, wait_s=0.05)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(5))))

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert batches == [[0, 1, 2, 3, 4]]
