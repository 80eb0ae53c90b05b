"""REST API and web page over the library's recognizer: `create_app(ServerSettings(...))`."""

from texscribe.server.app import ServerSettings, create_app

__all__ = ["ServerSettings", "create_app"]
