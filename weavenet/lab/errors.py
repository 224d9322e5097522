"""The one error type the lab raises for operational failures."""


class LabError(Exception):
    """Something about the lab failed; the message is one readable line."""
