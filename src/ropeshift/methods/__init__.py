"""The methods: each attention-level one a frozen dataclass defining rel(m, n), an optional mask and a logit scale
(``base.PositionMethod``); the RoPE-scaling ones beside them in ``rope_scaling``; one registry names them all.

    import ropeshift
    ropeshift.methods()                         # ['rope', 'string', 'rerope', ...]: the names apply() accepts
    from ropeshift.methods.registry import METHODS
    METHODS["string"]                           # -> StringMethod

``ropeshift.methods`` is this package, and calling it lists the method names (``ropeshift.api.methods``): the
package and the documented function share one name, so the package's module is callable (a ModuleType subclass),
whichever of the two a program touches first.
"""
import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self) -> list[str]:
        """Names accepted by ``ropeshift.apply``: "rope" (unpatched) and every registered method."""
        from ..api import methods

        return methods()


sys.modules[__name__].__class__ = _CallablePackage
