"""Playbooks: YAML + Jinja2 deployments over the inventory (see model.py for the format)."""

from shipper.playbook.model import Playbook, PlaybookError, load_playbook
from shipper.playbook.run import HostResult, prepare, run

__all__ = ["HostResult", "Playbook", "PlaybookError", "load_playbook", "prepare", "run"]
