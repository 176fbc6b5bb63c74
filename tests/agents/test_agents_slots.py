"""Slots: urgent waiters take the next free slot before backfill waiters, FIFO within a lane."""

from __future__ import annotations

import asyncio

import pytest

from agents.slots import Slots


async def _order(plan: list[tuple[str, bool]], size: int = 1) -> list[str]:
    slots = Slots(size)
    order: list[str] = []
    gate = asyncio.Event()

    async def holder() -> None:
        async with slots.lane(urgent=False):
            await gate.wait()

    async def worker(name: str, urgent: bool) -> None:
        async with slots.lane(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    held = [asyncio.create_task(holder()) for _ in range(size)]
    await asyncio.sleep(0)
    tasks = []
    for name, urgent in plan:
        tasks.append(asyncio.create_task(worker(name, urgent)))
        await asyncio.sleep(0)  # queued in this order
    assert slots.waiting == len(plan)
    gate.set()
    await asyncio.gather(*held, *tasks)
    return order


def test_urgent_waiters_go_first_and_each_lane_keeps_its_order() -> None:
    plan = [("b1", False), ("b2", False), ("live1", True), ("b3", False), ("live2", True)]
    assert asyncio.run(_order(plan)) == ["live1", "live2", "b1", "b2", "b3"]


def test_never_more_holders_than_slots() -> None:
    async def run() -> int:
        slots, inside, peak = Slots(3), 0, 0

        async def one(urgent: bool) -> None:
            nonlocal inside, peak
            async with slots.lane(urgent=urgent):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0)
                inside -= 1

        await asyncio.gather(*(one(n % 4 == 0) for n in range(50)))
        return peak

    assert asyncio.run(run()) == 3


def test_a_cancelled_waiter_does_not_lose_the_slot() -> None:
    async def run() -> bool:
        slots = Slots(1)
        await slots.acquire()
        waiter = asyncio.create_task(slots.acquire(urgent=True))
        await asyncio.sleep(0)
        slots.release()  # hands the slot to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(slots.acquire(), 1)  # the slot came back
        return True

    assert asyncio.run(run())
