"""One request of the decode loop: its views (token rows), its decoding rules, and what it has
generated so far. core.decode advances many of them together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class DecodeRequest:
    """One request's views and decoding rules. `rows[0]` is the public view; rows 1.. are groups
    and are mixed only when `bound > 0` (otherwise the caller passes the public row alone)."""

    rows: list[list[int]]
    bound: float
    order: float
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    eos_ids: frozenset[int] = frozenset()
    generator: torch.Generator | None = None
    audit: bool = False               # re-check every step's bound in float64 (white-box audit)
    # filled by the loop
    audit_margin: float | None = None  # worst b − D↔ over steps and groups (audit mode)
    generated: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"
    step_lambdas: list[torch.Tensor] = field(default_factory=list)
    step_divergences: list[torch.Tensor] = field(default_factory=list)
    emitted: int = 0                  # characters of `text` already handed out

    @property
    def n_groups(self) -> int:
        return len(self.rows) - 1

    @property
    def mixing(self) -> bool:
        return len(self.rows) > 1

    def accept(self, token: int, tokenizer: Any) -> tuple[str, bool]:
        """Record a sampled token; returns (text that became final, whether the request is done)."""
        self.generated.append(token)
        done = self._check_stop(tokenizer)
        # Hold back an incomplete UTF-8 character and a possible stop-string prefix.
        hold = max((len(s) for s in self.stop), default=1) - 1
        safe = len(self.text) if done else max(self.emitted, len(self.text.rstrip("\ufffd")) - hold)
        delta = self.text[self.emitted:safe] if safe > self.emitted else ""
        self.emitted = max(self.emitted, safe)
        return delta, done

    def _check_stop(self, tokenizer: Any) -> bool:
        if self.generated[-1] in self.eos_ids:
            self.finish_reason = "stop"
            self.text = tokenizer.decode(self.generated[:-1], skip_special_tokens=True)
            return True
        self.text = tokenizer.decode(self.generated, skip_special_tokens=True)
        for s in self.stop:
            at = self.text.find(s)
            if at >= 0:
                self.text, self.finish_reason = self.text[:at], "stop"
                return True
        if len(self.generated) >= self.max_new_tokens:
            self.finish_reason = "length"
            return True
        return False


__all__ = ["DecodeRequest"]
