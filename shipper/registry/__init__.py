"""The Registry HTTP API V2: names, credentials, authentication and the client."""

from shipper.registry.client import Descriptor, Manifest, RegistryClient
from shipper.registry.credentials import Credentials
from shipper.registry.names import Address, RepoRef, parse_address, parse_repo_ref

__all__ = ["Address", "Credentials", "Descriptor", "Manifest", "RegistryClient", "RepoRef", "parse_address", "parse_repo_ref"]
