"""tubeworker: run a command or a Python function for every job reserved from tubeserver or
beanstalkd (the ``tubeworker`` script, ``python -m tubeclient.harness``).

Modules, one responsibility each:

* `outcome` - pure decisions: exit status -> delete / release(delay) / bury, backoff with
  equal jitter, the attempt budget that a kick renews, the child's run limit.
* `child` - one child in its own process group: body on stdin, output tails, TERM -> grace
  -> KILL of the whole group at the deadline or on request, leftovers of the group killed.
* `callee` - the forkserver of ``--call module:function`` and the child it forks per job
  (with its `job` argument: checkpoints, and the return value sent back).
* `forkserver` - the harness's handle on that process.
* `channels` - the pipes a child writes checkpoints (and a function its outcome) to.
* `tracked` - job tracking on tubeserver: the checkpoint a retried job resumes from, the
  result with ``finish`` and the reason with ``fail``; delete and bury on beanstalkd.
* `output` - the children's output passed through a bounded buffer and a writer thread, so a
  slow reader of the harness's stdout never stalls the event loop.
* `supervisor` - reservers (one per server), slots, one task per job, signals.
* `log` - one logfmt or JSON line per event.
* `metrics` - ``--metrics-port``: Prometheus metrics (prometheus-client), served on a thread.
* `cli` / `__main__` - flags and TUBEWORKER_* variables, exit status 2 on bad input.
"""

from .outcome import Action, ChildEnd, Counters, End, Policy, Verb, backoff, decide
from .supervisor import Config, Supervisor

__all__ = [
    "Action", "ChildEnd", "Config", "Counters", "End", "Policy", "Supervisor", "Verb",
    "backoff", "decide",
]
