"""Typed errors raised by library code; the CLI turns each into a one-line message."""

from __future__ import annotations


class SpanQAError(Exception):
    """Base of every error spanqa reports to a user. The message is one line: what and the fix."""


class CheckpointError(SpanQAError):
    """A checkpoint directory is missing files, unreadable, unsafe or does not fit its config."""


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


class PackageError(SpanQAError):
    """A model package directory (or bare .onnx) is missing, incomplete or unreadable."""


class FeaturesError(SpanQAError):
    """A features directory is incomplete or inconsistent."""


class InferenceError(SpanQAError):
    """Inputs do not fit the model, or the runtime failed."""


class DownloadError(SpanQAError):
    """A download or archive extraction failed or was refused."""


class MissingBackendError(SpanQAError):
    """An optional backend is not installed; the message names the extra to install."""


def missing_backend(module: str, extra: str) -> MissingBackendError:
    return MissingBackendError(
        f"{module} is not installed; install it with: pip install 'spanqa[{extra}]'"
    )
