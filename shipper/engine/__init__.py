"""Docker engines through docker-py: connections, facts, images."""

from shipper.engine.client import COMMAND_TIMEOUT, Engine
from shipper.engine.connection import connect
from shipper.engine.info import EngineInfo, ImageSummary

__all__ = ["COMMAND_TIMEOUT", "Engine", "EngineInfo", "ImageSummary", "connect"]
