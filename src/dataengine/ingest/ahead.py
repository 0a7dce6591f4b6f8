"""Decoding a video ahead, on its own thread, while the rest of ingest starts up.

``dataengine ingest FILE`` spends its first half second or more importing the lineage database layer
(SQLAlchemy's ORM) and opening, or creating, the database; FFmpeg's decoder needs none of it. The CLI
therefore prepares its first input and starts decoding it here (this module imports neither the store
nor the database), and the pipeline takes the frames over when it gets to that video, after its hash,
lock and status checks, exactly as if it had decoded them itself: the same frames, numbers, damage
marks and decoder messages, in the same order.

Memory stays bounded however far the decoder gets ahead: frames whose pixels nothing uses (not
sampled, in a stream-copied clip) travel as their number alone, and at most ``held`` frames with
pixels wait; the decoder waits when that many do.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataengine.errors import InputRejectedError
from dataengine.ingest.decode import DecodedFrame, DecodeLog, decode_frames
from dataengine.ingest.prepare import Params, Prepared, prepare_video

_END = object()


@dataclass(frozen=True, slots=True)
class _File:
    """Which file was prepared: its resolved path, size and modification time."""

    path: Path
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> _File:
        stat = path.stat()
        return cls(path.resolve(), stat.st_size, stat.st_mtime_ns)


class DecodeAhead:
    """One video prepared and being decoded on a thread; :meth:`take` hands it over, :meth:`close`
    stops it when it was not taken."""

    def __init__(self, path: Path, params: Params, *, held: int = 32) -> None:
        self.params = params
        self._file = _File.of(path)
        self._items: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._slots = threading.Semaphore(held)
        self._stop = threading.Event()
        self._prepared: Prepared | None = None
        self._ready = threading.Event()
        self.log = DecodeLog()
        self._thread = threading.Thread(target=self._run, name="ingest-decode-ahead", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, raw: str, params: Params) -> DecodeAhead | None:
        """Start on input ``raw`` when it is a local video file; None otherwise."""
        path = Path(raw.removeprefix("file://")).expanduser()
        if "://" in raw and not raw.startswith("file://"):
            return None
        try:
            if not path.is_file():
                return None
            return cls(path, params)
        except OSError:
            return None  # Whatever is wrong with it, the pipeline finds and reports it.

    def _run(self) -> None:
        try:
            # The pipeline names the file in its own messages: a bad input is left to it entirely.
            prepared = prepare_video(self._file.path, name=str(self._file.path), params=self.params)
        except InputRejectedError:
            self._ready.set()
            return
        except BaseException:
            self._ready.set()
            raise
        self._prepared = prepared
        self._ready.set()
        try:
            needed = prepared.needed
            for decoded in decode_frames(
                prepared.container, prepared.info.stream, prepared.index, self.log, prepared.skip
            ):
                if needed is not None and not needed[decoded.number]:
                    decoded = DecodedFrame(number=decoded.number, frame=None, corrupt=decoded.corrupt)
                else:
                    while not self._slots.acquire(timeout=0.1):
                        if self._stop.is_set():
                            return
                if self._stop.is_set():
                    return
                self._items.put(decoded)
        except BaseException as exc:  # Handed to the consumer, which raises it where it reads.
            self._items.put(exc)
        finally:
            self._items.put(_END)

    def take(self, path: Path, params: Params) -> tuple[Prepared, Iterator[DecodedFrame], DecodeLog] | None:
        """The prepared video, its frames as they are decoded, and the decoder's log, when ``path``
        is the file started on (unchanged) and ``params`` the same; None otherwise (then it stops)."""
        self._ready.wait()
        try:
            same = _File.of(path) == self._file and params == self.params
        except OSError:
            same = False
        if not same or self._prepared is None:
            self.close()
            return None
        return self._prepared, self._frames(), self.log

    def _frames(self) -> Iterator[DecodedFrame]:
        while True:
            item = self._items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, DecodedFrame)
            if item.frame is not None:
                self._slots.release()
            yield item

    def close(self) -> None:
        """Stop decoding and release the file; frames not taken are dropped."""
        self._stop.set()
        self._ready.wait()
        self._thread.join()
        if self._prepared is not None:
            self._prepared.close()
            self._prepared = None
