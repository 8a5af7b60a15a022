"""Where a compiled model's spec came from: carried by the model (`NLModel.source`) so a run
directory can store it and a checkpoint can be matched to it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SpecSource:
    text: str                             # the main spec file's text
    path: str | None = None               # the path it was compiled from (None: spec text)
    overrides: dict = field(default_factory=dict)   # the `--set` values
    compilation: Any = None               # the front end's Compilation (its Unit holds every imported file)

    def spec_hash(self, name: str, config: dict) -> str:
        """The identity of a compiled spec: its text, its bound parameters and the model name."""
        return hashlib.sha256((self.text + json.dumps(config, sort_keys=True, default=str) + name).encode()).hexdigest()[:16]
