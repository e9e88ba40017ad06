"""Named parameter presets per protocol, kept in one JSON file (values as typed, lab units).

A preset is only text the form shows again: it is validated like anything typed when used,
so a preset saved before a protocol changed can never start a run the protocol would refuse.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from platformdirs import user_config_path


def default_presets_path() -> Path:
    return user_config_path("labctl", appauthor=False) / "gui-presets.json"


class Presets:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_presets_path()

    def _load(self) -> dict[str, dict[str, dict[str, str]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(proto): {
                str(n): {str(k): str(v) for k, v in p.items()} for n, p in named.items() if isinstance(p, dict)
            }
            for proto, named in data.items()
            if isinstance(named, dict)
        }

    def names(self, protocol: str) -> list[str]:
        return sorted(self._load().get(protocol, {}))

    def get(self, protocol: str, name: str) -> dict[str, str]:
        return dict(self._load().get(protocol, {}).get(name, {}))

    def save(self, protocol: str, name: str, params: dict[str, str]) -> None:
        if not name.strip():
            raise ValueError("preset: a name is needed")
        data = self._load()
        data.setdefault(protocol, {})[name.strip()] = {k: str(v) for k, v in params.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False))
        os.replace(tmp, self.path)  # never a half-written presets file
