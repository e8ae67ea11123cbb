"""Fixtures of the Cegid transfer tests live in cegid_testlib (a unique module name)."""

from cegid_testlib import world

__all__ = ["world"]
