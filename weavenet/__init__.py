"""weavenet: Weave's virtual Ethernet switch for containers, as a multi-process Python router."""

__version__ = "0.1.0"
