"""Typed errors. Messages say what to change and never contain private text."""

from __future__ import annotations


class DPFusionError(Exception):
    """Base class of the library's own errors."""


class EmptyContextError(DPFusionError, ValueError):
    """No usable input."""


class ContextTooLongError(DPFusionError, ValueError):
    """Prompt plus max_new_tokens exceed the model's context window."""


class ChatTemplateError(DPFusionError, ValueError):
    """The chat template is missing or alters message content."""


class MarkerError(DPFusionError, ValueError):
    """Text marked private was lost, split or altered on its way to the model (fail closed)."""


class ModelLoadError(DPFusionError, ValueError):
    """The model could not be found or loaded."""


class UnsupportedSamplingError(DPFusionError, ValueError):
    """A decoding setting that is not differentially private (greedy, beam search)."""


class PrivacyAuditError(DPFusionError, RuntimeError):
    """Audit mode found a step whose chosen mixture exceeds the enforced bound."""
