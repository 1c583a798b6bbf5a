"""Typed errors raised by library code; the CLI turns each into a one-line message."""

from __future__ import annotations

# Exit codes the CLI uses (documented in docs/reliability.md).
EXIT_FAILURE = 1  # the work failed (a model below the guard, a runtime that failed, ...)
EXIT_USAGE = 2  # bad options or arguments (click uses 2 as well)
EXIT_DATA = 3  # bad input data: a dataset, features, checkpoint or package that is not right
EXIT_OUTPUT = 4  # an output that cannot be written, or that would overwrite what spanqa did not write
EXIT_INTERNAL = 70  # a bug in spanqa (EX_SOFTWARE): the message says how to see the traceback
EXIT_INTERRUPTED = 130


class SpanQAError(Exception):
    """Base of every error spanqa reports to a user. The message is one line: what and the fix."""

    exit_code = EXIT_FAILURE


class UsageError(SpanQAError):
    """An option or argument value that cannot work (checked before any work starts)."""

    exit_code = EXIT_USAGE


class OutputError(SpanQAError):
    """An output path that cannot be written, or that holds files spanqa did not write."""

    exit_code = EXIT_OUTPUT


class CheckpointError(SpanQAError):
    """A checkpoint directory is missing files, unreadable, unsafe or does not fit its config."""

    exit_code = EXIT_DATA


class ExportError(SpanQAError):
    """ONNX export failed or its outputs do not match PyTorch's."""


class CompileError(SpanQAError):
    """Compiling an ONNX model for a target failed or failed verification."""


class VerificationError(SpanQAError):
    """A converted model's outputs differ from its reference beyond tolerance."""


class GuardError(SpanQAError):
    """A reduced-precision model fell below the accuracy guard."""


class DatasetError(SpanQAError):
    """A SQuAD file is not readable JSON or not SQuAD-shaped."""

    exit_code = EXIT_DATA


class PackageError(SpanQAError):
    """A model package directory (or bare .onnx) is missing, incomplete or unreadable."""

    exit_code = EXIT_DATA


class FeaturesError(SpanQAError):
    """A features directory is incomplete or inconsistent."""

    exit_code = EXIT_DATA


class ResultError(SpanQAError):
    """A result directory or a file in it (result.json, summary.json, an infer log) is missing
    what a report needs, is not JSON, or does not match the dataset it names."""

    exit_code = EXIT_DATA


class InferenceError(SpanQAError):
    """Inputs do not fit the model, or the runtime failed."""


class DownloadError(SpanQAError):
    """A download or archive extraction failed or was refused."""


class ClusterError(SpanQAError):
    """A Ray cluster could not be reached or a job on it failed or came back incomplete."""


class MissingBackendError(SpanQAError):
    """An optional backend is not installed; the message names the extra to install."""


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def missing_backend(module: str, extra: str) -> MissingBackendError:
    return MissingBackendError(f"{module} is not installed; install it with: pip install 'spanqa[{extra}]'")
