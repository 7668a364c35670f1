"""Public classes whose instances cloaca makes and users only receive (upstream's binding gives
them no constructor): calling the class is a TypeError that says how to get one."""

from __future__ import annotations

from typing import Any, ClassVar


class Sealed:
    """Base of such classes; cloaca makes instances with `object.__new__(cls)`."""

    __slots__ = ()
    _how_to_get_one: ClassVar[str] = ""
    """What the error suggests instead (`use cloaca.task(...)`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        hint = f"; {self._how_to_get_one}" if self._how_to_get_one else ""
        raise TypeError(f"{type(self).__name__} cannot be instantiated directly{hint}")
