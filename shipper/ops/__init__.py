"""Use cases over the inventory: each computes what it will do, then does it."""
