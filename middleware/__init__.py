"""groupspec middleware: the engine (message model, contract, group resolution, stores) and the SDK hook."""

from .config import Config, ConfigError, load_config
from .engine import Engine, Outcome
from .message import Message
from .sdk import install
from .stores import open_store

__all__ = ["Config", "ConfigError", "Engine", "Message", "Outcome", "install", "load_config", "open_store"]
