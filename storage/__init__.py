"""Database, content-addressed file store and settings: everything segbot keeps."""
