"""Settings, logging, metrics and the error base classes. Imports nothing else of segbot's."""

VERSION = "0.1.0"
