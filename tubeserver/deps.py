"""Job dependencies (`put-after`): a job that waits, invisible to reserve, until every parent
has finished.

A parent **finishes** when the connection that reserved it deletes or finishes it. A parent
that is deleted any other way (while ready, delayed, buried or itself waiting) was
**cancelled**: its waiting children stop waiting and are buried with a reason naming it, so no
child waits for ever for a parent that will never run. A buried parent may still be kicked
and finish, so its children keep waiting. The engine moves the jobs; this module keeps who
waits on whom. Pure.
"""

from __future__ import annotations

from .job import Job


class Deps:
    __slots__ = ("children", "waiting")

    def __init__(self) -> None:
        # parent id -> its waiting children by id, in put order (a dict: a child leaves in O(1))
        self.children: dict[int, dict[int, Job]] = {}
        self.waiting = 0  # jobs waiting on parents

    def wait(self, child: Job, parents: list[int]) -> None:
        """`child` waits until each of `parents` (live, distinct) finishes."""
        child.more().parents = parents
        for parent in parents:
            self.children.setdefault(parent, {})[child.id] = child
        self.waiting += 1

    def finished(self, parent: int) -> list[Job]:
        """`parent` finished: the children it released (no open parent left), in put order."""
        released = []
        for child in self.children.pop(parent, {}).values():
            extra = child.extra
            assert extra is not None and extra.parents is not None
            extra.parents.remove(parent)
            if not extra.parents:
                extra.parents = None
                self.waiting -= 1
                released.append(child)
        return released

    def cancelled(self, parent: int) -> list[Job]:
        """`parent` will never finish: every child waiting on it stops waiting."""
        stopped = list(self.children.pop(parent, {}).values())
        for child in stopped:
            self.forget(child)
        return stopped

    def forget(self, child: Job) -> None:
        """`child` stops waiting (deleted, kicked, reserved by id, or a parent cancelled)."""
        extra = child.extra
        if extra is None or extra.parents is None:
            return
        for parent in extra.parents:
            siblings = self.children.get(parent)
            if siblings is not None:
                del siblings[child.id]
                if not siblings:
                    del self.children[parent]
        extra.parents = None
        self.waiting -= 1
