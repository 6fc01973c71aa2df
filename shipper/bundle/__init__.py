"""Air-gapped bundles: the file format, written and read back verified."""

from shipper.bundle.format import BundleError, BundleImage, BundleManifest, BundleWriter, Verified, content_chunks, read_verified

__all__ = ["BundleError", "BundleImage", "BundleManifest", "BundleWriter", "Verified", "content_chunks", "read_verified"]
