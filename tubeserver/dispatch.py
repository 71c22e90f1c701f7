"""The only map from command values to engine calls: (session, command, now) -> reply.

It counts commands for `stats`, turns every ProtocolError into its reply line, and reports
the two outcomes that are not a reply: the session now waits (a blocked reserve), or it quit.
A PutStarted marker (the parser's word that a put header came before its data) only counts,
and its reply is empty: the put's reply comes with its data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from . import commands as c
from . import replies
from .access import Rights, check
from .engine import Engine, Wakeup
from .errors import (
    BadFormat,
    ExpectedCRLF,
    InternalError,
    NotFound,
    ProtocolError,
    Unauthorized,
    UnknownCommand,
)
from .schedules import BadSpec, parse_spec
from .session import Session
from .stats import (
    ADMIN_COMMAND_KEYS,
    COMMAND_KEYS,
    FLOW_COMMAND_KEYS,
    TRACKING_COMMAND_KEYS,
    LogStats,
    ProcessInfo,
    job_stats,
    job_status,
    jobs_list,
    limits_list,
    schedules_list,
    server_stats,
    to_yaml,
    to_yaml_seq,
    tube_info,
    tube_stats,
)


class Action(enum.Enum):
    WAIT = "wait"  # the session is now a waiter; its reply comes with an engine Wakeup
    CLOSE = "close"  # quit: close the connection without a reply
    # A failed `auth`: the network layer answers UNAUTHORIZED after AUTH_DELAY, then closes.
    REFUSE = "refuse"


Result = bytes | Action


def answer(wakeup: Wakeup) -> bytes:
    """The reply a waiting reserve or `result` gets when the engine answers it."""
    if wakeup.job is not None:
        return replies.reserved(wakeup.job)
    if wakeup.batch is not None:
        return replies.reserved_batch(wakeup.batch)
    if wakeup.outcome is not None:
        return replies.outcome(wakeup.outcome)
    if wakeup.cleared >= 0:
        return replies.cleared(wakeup.cleared)
    assert wakeup.error is not None
    return wakeup.error.reply


def _reraise(event: c.Event, error: Exception) -> None:
    raise error


class Dispatcher:
    def __init__(self, engine: Engine, info: ProcessInfo,
                 on_bug: Callable[[c.Event, Exception], None] = _reraise) -> None:
        self.engine = engine
        self.info = info
        self.on_bug = on_bug
        # The write-ahead log's figures for `stats`, when there is a log.
        self.log_stats: Callable[[], LogStats] = LogStats
        self.counts: dict[str, int] = dict.fromkeys(
            COMMAND_KEYS + TRACKING_COMMAND_KEYS + FLOW_COMMAND_KEYS + ADMIN_COMMAND_KEYS, 0)
        # The wall clock minus the engine's clock, for the times job-status shows.
        self.wall = 0.0
        # With an auth file: a token's Rights, or None for a token it does not hold. Without
        # one (None), `auth` is an unknown command and every command is allowed.
        self.authenticate: Callable[[str], Rights | None] | None = None
        self._handlers: dict[type, Callable[[Any, Session, float], Result]] = {
            c.Put: self._put, c.Use: self._use, c.Reserve: self._reserve,
            c.ReserveBatch: self._reserve_batch, c.ReserveJob: self._reserve_job,
            c.Delete: self._delete, c.Release: self._release,
            c.Bury: self._bury, c.Touch: self._touch, c.Watch: self._watch,
            c.Ignore: self._ignore, c.Peek: self._peek, c.PeekReady: self._peek_ready,
            c.PeekDelayed: self._peek_delayed, c.PeekBuried: self._peek_buried,
            c.Kick: self._kick, c.KickJob: self._kick_job, c.StatsJob: self._stats_job,
            c.StatsTube: self._stats_tube, c.Stats: self._stats, c.ListTubes: self._list_tubes,
            c.ListTubeUsed: self._list_tube_used, c.ListTubesWatched: self._list_watched,
            c.PauseTube: self._pause_tube, c.Quit: self._quit, c.Rejected: self._rejected,
            c.Finish: self._finish, c.Fail: self._fail, c.Result: self._result,
            c.JobStatus: self._job_status, c.Checkpoint: self._checkpoint,
            c.PeekCheckpoint: self._peek_checkpoint, c.PutUnique: self._put_unique,
            c.PutAfter: self._put_after, c.Schedule: self._schedule,
            c.Unschedule: self._unschedule, c.ListSchedules: self._list_schedules,
            c.TubeLimits: self._tube_limits, c.ListTubeLimits: self._list_tube_limits,
            c.ListJobs: self._list_jobs, c.ClearTube: self._clear_tube,
            c.KickTube: self._kick_tube, c.TubeInfo: self._tube_info,
            c.PutStarted: self._put_started, c.Auth: self._auth,
        }

    def handle(self, s: Session, event: c.Event, now: float) -> Result:
        engine = self.engine
        due = engine.next_deadline()
        if due is not None and due <= now:
            # Bring time-driven state up to date first, whatever the ticker's lag.
            engine.tick(now)
        try:
            if self.authenticate is not None:
                rights = s.rights
                if rights is None or isinstance(event, c.Auth):
                    return self._unauthenticated(s, event)
                if not check(engine, s, rights, event):
                    # A refused put is answered once, after its data: its header says nothing.
                    return b"" if isinstance(event, c.PutStarted) else Unauthorized.reply
            # The commands of the hot path by a type test each: compiled, these are direct
            # native calls, where the table's bound methods go through Python's call protocol.
            if isinstance(event, c.Put):
                return self._put(event, s, now)
            if isinstance(event, c.Delete):
                return self._delete(event, s, now)
            if isinstance(event, c.Reserve):
                return self._reserve(event, s, now)
            if isinstance(event, c.ReserveBatch):
                return self._reserve_batch(event, s, now)
            return self._handlers[type(event)](event, s, now)
        except ProtocolError as e:
            return e.reply
        except Exception as bug:  # not `e`: compiled, a name keeps the type it first had
            # A server bug. The server's handler logs it and this client is told, rather
            # than every connection (and every job held in memory) going down with the
            # process; without a handler the exception propagates.
            self.on_bug(event, bug)
            return InternalError.reply

    # Each handler counts its command (as beanstalkd: once the arguments parsed) and acts.

    def _put(self, cmd: c.Put, s: Session, now: float) -> Result:
        if s.put_counted:  # at its header (PutStarted)
            s.put_counted = False
        else:
            self.counts["cmd-put"] += 1
        return replies.inserted(self.engine.put(s, cmd.pri, cmd.delay, cmd.ttr, cmd.body,
                                                now).id)

    def _use(self, cmd: c.Use, s: Session, now: float) -> Result:
        self.counts["cmd-use"] += 1
        return replies.using(self.engine.use(s, cmd.tube).name)

    def _reserve(self, cmd: c.Reserve, s: Session, now: float) -> Result:
        if cmd.timeout is None:
            self.counts["cmd-reserve"] += 1
        else:
            self.counts["cmd-reserve-with-timeout"] += 1
        job = self.engine.reserve(s, cmd.timeout, now)
        return Action.WAIT if job is None else replies.reserved(job)

    def _reserve_batch(self, cmd: c.ReserveBatch, s: Session, now: float) -> Result:
        jobs = self.engine.reserve_batch(s, cmd.count, cmd.timeout, now)
        return Action.WAIT if jobs is None else replies.reserved_batch(jobs)

    def _reserve_job(self, cmd: c.ReserveJob, s: Session, now: float) -> Result:
        return replies.reserved(self.engine.reserve_job(s, cmd.id, now))

    def _delete(self, cmd: c.Delete, s: Session, now: float) -> Result:
        self.counts["cmd-delete"] += 1
        self.engine.delete(s, cmd.id, now)
        return replies.DELETED

    def _release(self, cmd: c.Release, s: Session, now: float) -> Result:
        self.counts["cmd-release"] += 1
        self.engine.release(s, cmd.id, cmd.pri, cmd.delay, now)
        return replies.RELEASED

    def _bury(self, cmd: c.Bury, s: Session, now: float) -> Result:
        self.counts["cmd-bury"] += 1
        self.engine.bury(s, cmd.id, cmd.pri, now)
        return replies.BURIED

    def _touch(self, cmd: c.Touch, s: Session, now: float) -> Result:
        self.counts["cmd-touch"] += 1
        self.engine.touch(s, cmd.id, now)
        return replies.TOUCHED

    def _watch(self, cmd: c.Watch, s: Session, now: float) -> Result:
        self.counts["cmd-watch"] += 1
        return replies.watching(self.engine.watch(s, cmd.tube))

    def _ignore(self, cmd: c.Ignore, s: Session, now: float) -> Result:
        self.counts["cmd-ignore"] += 1
        return replies.watching(self.engine.ignore(s, cmd.tube))

    def _peek(self, cmd: c.Peek, s: Session, now: float) -> Result:
        self.counts["cmd-peek"] += 1
        return replies.found(self.engine.peek(cmd.id))

    def _peek_ready(self, cmd: c.PeekReady, s: Session, now: float) -> Result:
        self.counts["cmd-peek-ready"] += 1
        return replies.found(self.engine.peek_ready(s))

    def _peek_delayed(self, cmd: c.PeekDelayed, s: Session, now: float) -> Result:
        self.counts["cmd-peek-delayed"] += 1
        return replies.found(self.engine.peek_delayed(s))

    def _peek_buried(self, cmd: c.PeekBuried, s: Session, now: float) -> Result:
        self.counts["cmd-peek-buried"] += 1
        return replies.found(self.engine.peek_buried(s))

    def _kick(self, cmd: c.Kick, s: Session, now: float) -> Result:
        self.counts["cmd-kick"] += 1
        return replies.kicked(self.engine.kick(s, cmd.bound, now))

    def _kick_job(self, cmd: c.KickJob, s: Session, now: float) -> Result:
        self.engine.kick_job(cmd.id, now)
        return replies.KICKED

    def _stats_job(self, cmd: c.StatsJob, s: Session, now: float) -> Result:
        self.counts["cmd-stats-job"] += 1
        return replies.ok(to_yaml(job_stats(self.engine.peek(cmd.id), now)))

    def _stats_tube(self, cmd: c.StatsTube, s: Session, now: float) -> Result:
        self.counts["cmd-stats-tube"] += 1
        tube = self.engine.tubes.get(cmd.tube)
        if tube is None:
            raise NotFound()
        return replies.ok(to_yaml(tube_stats(tube, now)))

    def _stats(self, cmd: c.Stats, s: Session, now: float) -> Result:
        self.counts["cmd-stats"] += 1
        return replies.ok(to_yaml(server_stats(self.engine, self.counts, self.info, now,
                                                 self.log_stats())))

    def _list_tubes(self, cmd: c.ListTubes, s: Session, now: float) -> Result:
        self.counts["cmd-list-tubes"] += 1
        return replies.ok(replies.yaml_list(t.name for t in self.engine.tube_list))

    def _list_tube_used(self, cmd: c.ListTubeUsed, s: Session, now: float) -> Result:
        self.counts["cmd-list-tube-used"] += 1
        return replies.using(s.used.name)

    def _list_watched(self, cmd: c.ListTubesWatched, s: Session, now: float) -> Result:
        self.counts["cmd-list-tubes-watched"] += 1
        return replies.ok(replies.yaml_list(t.name for t in s.watched))

    def _pause_tube(self, cmd: c.PauseTube, s: Session, now: float) -> Result:
        self.counts["cmd-pause-tube"] += 1
        self.engine.pause_tube(cmd.tube, cmd.delay, now)
        return replies.PAUSED

    def _quit(self, cmd: c.Quit, s: Session, now: float) -> Result:
        return Action.CLOSE

    # Job tracking (tracking.py has the rules).

    def _finish(self, cmd: c.Finish, s: Session, now: float) -> Result:
        self.counts["cmd-finish"] += 1
        self.engine.delete(s, cmd.id, now, cmd.result)
        return replies.FINISHED

    def _fail(self, cmd: c.Fail, s: Session, now: float) -> Result:
        self.counts["cmd-fail"] += 1
        self.engine.bury(s, cmd.id, cmd.pri, now, cmd.reason)
        return replies.BURIED

    def _result(self, cmd: c.Result, s: Session, now: float) -> Result:
        self.counts["cmd-result"] += 1
        result = self.engine.results.result(s, cmd.id, cmd.timeout, now)
        return Action.WAIT if result is None else replies.outcome(result)

    def _job_status(self, cmd: c.JobStatus, s: Session, now: float) -> Result:
        self.counts["cmd-job-status"] += 1
        job = self.engine.results.job_status(cmd.id)
        return replies.ok(to_yaml(job_status(job, self.engine.tracker, self.wall)))

    def _checkpoint(self, cmd: c.Checkpoint, s: Session, now: float) -> Result:
        self.counts["cmd-checkpoint"] += 1
        self.engine.results.checkpoint(s, cmd.id, cmd.data, now)
        return replies.CHECKPOINTED

    def _peek_checkpoint(self, cmd: c.PeekCheckpoint, s: Session, now: float) -> Result:
        self.counts["cmd-peek-checkpoint"] += 1
        return replies.found_data(cmd.id, self.engine.results.peek_checkpoint(cmd.id))

    # Flow control (flow.py and its modules have the rules).

    def _put_unique(self, cmd: c.PutUnique, s: Session, now: float) -> Result:
        self.counts["cmd-put-unique"] += 1
        job_id, new = self.engine.flow.put_unique(s, cmd.key, cmd.window, cmd.pri, cmd.delay,
                                                  cmd.ttr, cmd.body, now)
        return replies.inserted(job_id) if new else replies.duplicate(job_id)

    def _put_after(self, cmd: c.PutAfter, s: Session, now: float) -> Result:
        self.counts["cmd-put-after"] += 1
        job = self.engine.flow.put_after(s, list(cmd.parents), cmd.pri, cmd.delay, cmd.ttr,
                                         cmd.body, now)
        return replies.inserted(job.id)

    def _schedule(self, cmd: c.Schedule, s: Session, now: float) -> Result:
        self.counts["cmd-schedule"] += 1
        try:
            spec = parse_spec(cmd.spec)
        except BadSpec:
            raise BadFormat() from None
        self.engine.flow.schedule(cmd.name, cmd.tube, cmd.pri, cmd.ttr, cmd.body, spec, now)
        return replies.SCHEDULED

    def _unschedule(self, cmd: c.Unschedule, s: Session, now: float) -> Result:
        self.counts["cmd-unschedule"] += 1
        self.engine.flow.unschedule(cmd.name)
        return replies.UNSCHEDULED

    def _list_schedules(self, cmd: c.ListSchedules, s: Session, now: float) -> Result:
        self.counts["cmd-list-schedules"] += 1
        return replies.ok(to_yaml_seq(schedules_list(self.engine.flow.schedules.table.values())))

    def _tube_limits(self, cmd: c.TubeLimits, s: Session, now: float) -> Result:
        self.counts["cmd-tube-limits"] += 1
        self.engine.flow.set_limits(cmd.tube, cmd.max_reserved, cmd.max_jobs, cmd.rate, now)
        return replies.LIMITED

    def _list_tube_limits(self, cmd: c.ListTubeLimits, s: Session, now: float) -> Result:
        self.counts["cmd-list-tube-limits"] += 1
        return replies.ok(to_yaml_seq(limits_list(self.engine)))

    # Admin commands (admin.py has the rules).

    def _list_jobs(self, cmd: c.ListJobs, s: Session, now: float) -> Result:
        self.counts["cmd-list-jobs"] += 1
        jobs = self.engine.admin.list_jobs(cmd.tube, cmd.state, cmd.offset, cmd.limit)
        return replies.ok(to_yaml_seq(jobs_list(jobs, now)))

    def _clear_tube(self, cmd: c.ClearTube, s: Session, now: float) -> Result:
        self.counts["cmd-clear-tube"] += 1
        count = self.engine.admin.clear(s, cmd.tube, cmd.state, now)
        return Action.WAIT if count is None else replies.cleared(count)

    def _kick_tube(self, cmd: c.KickTube, s: Session, now: float) -> Result:
        self.counts["cmd-kick-tube"] += 1
        return replies.kicked(self.engine.admin.kick(cmd.tube, cmd.bound, now))

    def _tube_info(self, cmd: c.TubeInfo, s: Session, now: float) -> Result:
        self.counts["cmd-tube-info"] += 1
        tube = self.engine.tubes.get(cmd.tube)
        if tube is None:
            raise NotFound()
        return replies.ok(to_yaml(tube_info(tube, now)))

    def _put_started(self, cmd: c.PutStarted, s: Session, now: float) -> Result:
        # As beanstalkd: the counts move when the header is read, whatever becomes of the put.
        self.counts["cmd-put"] += 1
        s.put_counted = True
        if cmd.producer:
            self.engine.start_put(s)
        return b""

    # Authentication (access.py has the rights, tokens.py the auth file).

    def _unauthenticated(self, s: Session, event: c.Event) -> Result:
        """Before a good `auth`, only `auth` and `quit`; `auth` again later swaps rights."""
        if isinstance(event, c.Auth):
            assert self.authenticate is not None
            rights = self.authenticate(event.token)
            if rights is None:
                s.rights = None
                return Action.REFUSE
            s.rights = rights
            return replies.AUTHORIZED
        if isinstance(event, c.Quit):
            return Action.CLOSE
        return b"" if isinstance(event, c.PutStarted) else Unauthorized.reply

    def _auth(self, cmd: c.Auth, s: Session, now: float) -> Result:
        raise UnknownCommand()  # no auth file: as beanstalkd, which has no `auth`

    def _rejected(self, cmd: c.Rejected, s: Session, now: float) -> Result:
        if cmd.verb == "put":
            if s.put_counted:
                s.put_counted = False
            else:
                self.counts["cmd-put"] += 1
                if isinstance(cmd.error, ExpectedCRLF):  # its header was accepted
                    self.engine.start_put(s)
        elif cmd.verb is not None:
            # finish, fail, checkpoint refused with JOB_TOO_BIG or EXPECTED_CRLF, as put.
            self.counts["cmd-" + cmd.verb] += 1
        return cmd.error.reply
