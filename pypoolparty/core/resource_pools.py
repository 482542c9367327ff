"""
An executor's pools, one per set of per-call resources.

Calls with equal ``resource_dict``\\ s share a pool, so they share its
workers and travel in its arrays; each new set of resources gets a pool of
its own, with the executor's settings and an adapter that asks the
scheduler for those resources (:meth:`Scheduler.with_resources`).
"""
from __future__ import annotations

import threading
import typing

from . import resources as resources_module
from .pool import ClusterPool
from .resources import Resources


class ResourcePools:
    """The pools of one executor, by :class:`Resources`.

    Parameters
    ----------
    base : ClusterPool
        The pool of calls without a ``resource_dict``; the others copy its
        settings.
    """

    def __init__(self, base: ClusterPool):
        self.base = base
        self._pools: typing.Dict[Resources, ClusterPool] = {Resources(): base}
        self._lock = threading.Lock()

    def parse(self, resource_dict: typing.Optional[typing.Mapping[str, typing.Any]]) -> Resources:
        """The resources of a ``resource_dict``; ValueError for a key or value
        the scheduler does not know, before anything is submitted."""
        scheduler = self.base.scheduler
        return resources_module.parse(resource_dict, scheduler.known_option, scheduler.name)

    def pool_for(self, resources: Resources) -> ClusterPool:
        """The pool of calls with these resources, made at its first call.

        Raises
        ------
        ValueError
            If the scheduler cannot give these resources.
        """
        with self._lock:
            pool = self._pools.get(resources)
            if pool is None:
                scheduler = self.base.scheduler.with_resources(resources)
                pool = self.base._sibling(scheduler, cwd=resources.cwd)
                self._pools[resources] = pool
            return pool

    def all(self) -> typing.List[ClusterPool]:
        """Every pool made so far, the base first."""
        with self._lock:
            return list(self._pools.values())
