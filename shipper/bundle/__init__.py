"""Air-gapped bundles: the file format, written and read back verified."""

from shipper.bundle.format import BundleError, BundleImage, BundleManifest
from shipper.bundle.reader import Verified, check_signature, content_chunks, read_verified
from shipper.bundle.writer import BundleWriter

__all__ = ["BundleError", "BundleImage", "BundleManifest", "BundleWriter", "Verified", "check_signature", "content_chunks", "read_verified"]
