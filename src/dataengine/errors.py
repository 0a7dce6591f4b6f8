"""The one exception tree of dataengine. Every message names the input and, where there is one, the fix."""

from __future__ import annotations


class DataEngineError(Exception):
    """Base of every error that dataengine raises on purpose."""

    #: Whether retrying the same call later can succeed (a network blip, a busy database).
    retryable: bool = False


class ConfigError(DataEngineError):
    """The settings are missing or invalid."""


class StorageError(DataEngineError):
    """Object storage could not be read or written."""


class RetryableStorageError(StorageError):
    """A transient storage failure; the caller may retry."""

    retryable = True


class ObjectNotFoundError(StorageError):
    """The key does not exist in the store."""


class ObjectExistsError(StorageError):
    """An immutable object already exists with different content."""


class FormatError(DataEngineError):
    """A file does not follow its format."""


class IndexDamagedError(FormatError):
    """A manifest's columnar index (derived data) is damaged where a reader read it: the message names
    the index file, the problem and the fix (delete the index; the next reader parses the manifest)."""


class AnnotationValidationError(FormatError):
    """A clip annotation document failed validation.

    ``source`` names the file or input, ``field`` the JSON path of the first failing field.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: invalid annotation at {field}: {problem}")


class LineageError(DataEngineError):
    """The lineage database refused an operation or is inconsistent with it."""


class RetryableLineageError(LineageError):
    """The lineage database is unreachable or busy; the caller may retry."""

    retryable = True


class NotFoundError(LineageError):
    """A clip, video, dataset or model id is unknown."""


class StageError(DataEngineError):
    """A clip is not in a stage that allows the requested operation."""


class InputRejectedError(DataEngineError):
    """An input (video, label export) cannot be processed and is quarantined.

    ``input`` names the input and ``reason`` says what is wrong with it.
    """

    def __init__(self, input: str, reason: str) -> None:
        self.input = input
        self.reason = reason
        super().__init__(f"{input}: {reason}")


class ModelError(DataEngineError):
    """A model checkpoint is missing, unreadable or incompatible."""


class TrainingError(DataEngineError):
    """Training could not run or did not produce a usable model."""


class ReviewError(DataEngineError):
    """The review platform refused an export or an import."""


class EmptyDatasetError(TrainingError):
    """No clip qualifies for a dataset snapshot, or a split has no frames to train or evaluate on."""


class NothingReviewedError(EmptyDatasetError):
    """No clip has trusted labels yet (day one): there is nothing to build a dataset from."""


class NothingToDoError(DataEngineError):
    """Not a failure: a task found no new input, so it and what depends on it are skipped.

    Airflow marks the task skipped (no Asset event fires); ``demo --through python`` stops the DAG there.
    """


class AlreadyDecidedError(NothingToDoError):
    """The dataset version has had its round: a model was trained on it and its promotion decided."""
