"""pytest plugin for mutation runs (``make mutation``; loaded by ``-p tools.mutation_plugin``).

mutmut names a mutant after the file it is in: ``functions/universign_webhook/universign_state.py``
gives ``functions.universign_webhook.universign_state.x_claim_event__mutmut_3``, and its
trampolines switch a mutant on only in functions whose ``__module__`` is that dotted name. The
tests import function modules by bare name (``universign_state``), as main.py does once deployed,
so those functions say ``universign_state``. This plugin renames, at import, the functions of
every bare-named function module to the dotted name mutmut uses; nothing else changes (the
module keeps its name, its loggers theirs). Outside a mutation run it is never loaded.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"


def dotted_names(functions: Path = FUNCTIONS) -> dict[str, str]:
    """Bare module name -> the dotted name mutmut derives from its path."""
    names: dict[str, str] = {}
    for source in sorted(functions.glob("*/*.py")):
        if source.stem != "main":
            names[source.stem] = f"functions.{source.parent.name}.{source.stem}"
    return names


def _rename(value: Any, bare: str, dotted: str, seen: set[int]) -> None:
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if isinstance(value, property):
        for part in (value.fget, value.fset, value.fdel):
            if part is not None:
                _rename(part, bare, dotted, seen)
        return
    if isinstance(value, FunctionType):
        if value.__module__ == bare:
            value.__module__ = dotted
        inner = getattr(value, "__wrapped__", None)  # the trampoline's wrapped function
        if inner is not None:
            _rename(inner, bare, dotted, seen)
    elif isinstance(value, dict):  # mutmut's table of a function's mutants
        for item in list(value.values()):
            if isinstance(item, FunctionType):
                _rename(item, bare, dotted, seen)
    elif isinstance(value, type) and value.__module__ == bare:
        for item in list(vars(value).values()):
            _rename(item, bare, dotted, seen)


def rename_functions(module: ModuleType, dotted: str) -> None:
    """Give every function defined in ``module`` (and in its classes) ``dotted`` as module."""
    seen: set[int] = set()
    for value in list(vars(module).values()):
        _rename(value, module.__name__, dotted, seen)


class _Renaming(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader, dotted: str) -> None:
        self.inner = inner
        self.dotted = dotted

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        rename_functions(module, self.dotted)


class BareFunctionModules(importlib.abc.MetaPathFinder):
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        dotted = self.names.get(fullname)
        if dotted is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Renaming(spec.loader, dotted)
        return spec


def install() -> None:
    if not any(isinstance(f, BareFunctionModules) for f in sys.meta_path):
        sys.meta_path.insert(0, BareFunctionModules(dotted_names()))


# The emulators, started once per mutation run: mutmut runs every mutant in a pytest session of
# its own (forked from its main process), and the session-scoped ``stack`` fixture would start
# and stop Pub/Sub, fake-gcs-server and Secret Manager each time (seconds per mutant). Sessions
# share the first one's services instead; they stop when the mutmut process exits.
_shared: dict[str, Any] = {}


def share_stack() -> None:
    from devtools import stack as devstack

    if getattr(devstack.Stack.start, "shared", False):
        return
    start, stop = devstack.Stack.start, devstack.Stack.stop

    def shared_start(self: Any, services: Any = devstack.SERVICES) -> Any:
        wanted = list(services)
        running = _shared.setdefault(
            "stack", devstack.Stack(self.log_dir, project=self.project, timeout=self.timeout)
        )
        start(running, wanted)
        self._running.update({n: running._running[n] for n in wanted})
        return self

    def shared_stop(self: Any) -> None:
        if self is _shared.get("stack") or "stack" not in _shared:
            stop(self)
        else:
            self._running.clear()

    shared_start.shared = True  # type: ignore[attr-defined]
    devstack.Stack.start = shared_start  # type: ignore[method-assign]
    devstack.Stack.stop = shared_stop  # type: ignore[method-assign]


# At plugin import, before pytest loads the conftests that import function modules.
install()
share_stack()
