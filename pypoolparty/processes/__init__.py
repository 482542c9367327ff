"""
Pools on this machine's cores whose workers outlive the driver.

``pypoolparty.processes.Pool`` runs the cluster pools' engine with detached
local processes as its workers, so that the store (``cache_dir``) and the
resume after a killed driver work without a cluster. The pool is imported
on first use: the launcher of a worker (:mod:`.detached`) imports nothing.
"""
import importlib

__all__ = ["Pool", "Executor"]


def __getattr__(name):
    if name == "Pool":
        return importlib.import_module(".pool", __name__).Pool
    if name == "Executor":
        from ..core.executor import executor_class

        cls = executor_class(__getattr__("Pool"), "whose calls run as detached processes of this machine")
        globals()["Executor"] = cls  # made once
        return cls
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
