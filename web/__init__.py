"""The Telegram Mini App: a page to review and correct one recognition result, and its JSON API."""
