"""A bounded read-ahead queue: a background thread runs an iterator ahead of its consumer.

Used to decode the next frames while the detectors run on the current batch. JPEG decoding in Pillow
and PyTorch's operators both release the GIL, so the two overlap on separate cores.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: How often a producer blocked on a full queue checks whether the consumer has stopped.
_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class _Failed:
    """The exception the source raised, passed to the consumer to raise there."""

    error: BaseException


class _Done:
    """The source is exhausted."""


_DONE = _Done()


@dataclass
class _Slot(Generic[T]):
    item: T


def prefetched(source: Iterable[T], depth: int, *, name: str = "prefetch") -> Generator[T, None, None]:
    """The items of ``source``, in order, produced by a background thread at most ``depth`` items ahead.

    An exception raised by ``source`` is raised here, in the consumer, at the point where the item
    would have come (the items before it are delivered first). When the consumer stops early (closes
    this generator, or leaves a ``for`` loop over it through an exception and the generator is closed),
    the thread stops after its current item, closes ``source`` and is joined before ``close`` returns:
    no thread outlives the generator. Memory holds at most ``depth`` items in the queue, plus the one
    the thread is producing and the one the consumer holds.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    slots: queue.Queue[_Slot[T] | _Failed | _Done] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: _Slot[T] | _Failed | _Done) -> bool:
        # A blocking put with a timeout wakes as soon as a slot frees; the timeout only bounds how
        # long a stopped consumer goes unnoticed.
        while not stop.is_set():
            try:
                slots.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not put(_Slot(item)):
                    return
            put(_DONE)
        except BaseException as exc:  # every error goes to the consumer, which raises it
            put(_Failed(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            entry = slots.get()
            if isinstance(entry, _Done):
                return
            if isinstance(entry, _Failed):
                raise entry.error
            yield entry.item
    finally:
        stop.set()
        thread.join()
