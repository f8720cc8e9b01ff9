"""Position-remapping methods. Each is a frozen dataclass defining rel(m, n), an optional mask and logit scale.

The method registry (``ropeshift.remaps.registry.METHODS``) maps user-facing names to classes.
"""
