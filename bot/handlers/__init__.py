"""Telegram handlers by feature; which update goes to which handler is wired in bot.app only."""
