"""The one exception type that user-facing code raises for bad input."""


class PrototokensError(Exception):
    """Bad input or a refused operation; the message is one line and names the fix."""
