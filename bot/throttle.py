"""When may a progress message be edited again: at most once per interval, never while
Telegram asked us to wait (RetryAfter), and never with unchanged text."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EditThrottle:
    min_interval: float = 3.0
    _last_text: dict[object, str] = field(default_factory=dict)
    _next_allowed: dict[object, float] = field(default_factory=dict)

    def should_edit(self, key: object, text: str, now: float) -> bool:
        if self._last_text.get(key) == text:
            return False
        return now >= self._next_allowed.get(key, 0.0)

    def edited(self, key: object, text: str, now: float) -> None:
        self._last_text[key] = text
        self._next_allowed[key] = max(self._next_allowed.get(key, 0.0), now + self.min_interval)

    def retry_after(self, key: object, seconds: float, now: float) -> None:
        self._next_allowed[key] = now + max(seconds, self.min_interval)

    def forget(self, key: object) -> None:
        self._last_text.pop(key, None)
        self._next_allowed.pop(key, None)
