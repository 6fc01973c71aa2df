"""A local lab of real Docker engines, sshds and a registry, for the demo and the tests."""

from shipper.lab.images import Layer, SyntheticImage, busybox_image, image_id, registry_image, save_stream
from shipper.lab.lab import DEFAULT_ROOT, Lab

__all__ = ["DEFAULT_ROOT", "Lab", "Layer", "SyntheticImage", "busybox_image", "image_id", "registry_image", "save_stream"]
