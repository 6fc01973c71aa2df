"""Hosts and groups: how shipper knows what to act on and how to reach it."""

from shipper.inventory.loader import adhoc_host, load_inventory
from shipper.inventory.model import EngineEndpoint, Group, Host, Inventory, SSHSettings, TLSFiles
from shipper.inventory.targets import Selection, select

__all__ = ["EngineEndpoint", "Group", "Host", "Inventory", "SSHSettings", "Selection", "TLSFiles", "adhoc_host", "load_inventory", "select"]
