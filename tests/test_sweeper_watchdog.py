"""The sweeper's watchdog: a consumer that receives nothing while jobs wait is made to reconnect
(after a Redis restart broke an acknowledgement, Celery's consumer can stay deaf)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jobqueue.worker import Sweeper


class _Hub:
    def __init__(self) -> None:
        self.calls: list = []

    def call_soon(self, callback) -> None:  # type: ignore[no-untyped-def]
        self.calls.append(callback)


def _sweeper() -> tuple[Sweeper, _Hub]:
    sweeper = Sweeper(app=None, settings=SimpleNamespace(sweep_interval_s=1.0), queues=("train",))
    hub = _Hub()
    sweeper.consumer = SimpleNamespace(hub=hub)
    return sweeper, hub


def test_deaf_consumer_is_made_to_reconnect() -> None:
    sweeper, hub = _sweeper()
    assert sweeper.deaf_after_s == 5.0  # three sweeps, at least 5 s
    assert not sweeper.check_hearing(waiting=True, sent=True, idle=True, now=100.0)  # token out
    assert not sweeper.check_hearing(waiting=True, sent=True, idle=True, now=104.0)
    assert sweeper.check_hearing(waiting=True, sent=True, idle=True, now=105.5)
    (callback,) = hub.calls
    with pytest.raises(ConnectionError):  # raised inside the consumer's loop: Celery reconnects
        callback()


@pytest.mark.parametrize("case", ["heard", "busy", "nothing waiting", "no token sent"])
def test_a_hearing_or_busy_worker_is_left_alone(case: str) -> None:
    sweeper, hub = _sweeper()
    if case == "no token sent":  # tokens already wait for another (busy) worker
        for now in range(100, 130):
            assert not sweeper.check_hearing(waiting=True, sent=False, idle=True, now=float(now))
    else:
        sweeper.check_hearing(waiting=True, sent=True, idle=True, now=100.0)
        if case == "heard":
            sweeper.heard()  # task_received: a wake-up arrived (drain found nothing claimable)
        args = {"busy": dict(waiting=True, idle=False), "nothing waiting": dict(waiting=False, idle=True),
                "heard": dict(waiting=True, idle=True)}[case]
        assert not sweeper.check_hearing(sent=False, now=110.0, **args)
        assert not sweeper.check_hearing(sent=False, now=120.0, **args)
    assert hub.calls == []
