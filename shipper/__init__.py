"""shipper: move Docker images between Docker engines, and deploy them."""

__version__ = "0.1.0"
