"""Moving bytes and running commands: SSH sessions and, later, byte pipes."""
