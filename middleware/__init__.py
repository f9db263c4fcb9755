"""groupspec middleware: message model, data contract, group resolution, stores and SDK hooks."""

from .config import Config, ConfigError, load_config
from .message import Message
from .pipeline import Pipeline
from .sdk import install
from .stores import open_store

__all__ = ["Config", "ConfigError", "Message", "Pipeline", "install", "load_config", "open_store"]
