"""The Telegram bot: conversation handlers around storage, the queue and the annotations API.

The bot never runs a model: it validates uploads in threads, queues jobs and delivers notices."""
