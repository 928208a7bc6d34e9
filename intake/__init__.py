"""Labels coming in from any front end (the bot's chat, the Mini App): validated once, stored once."""
