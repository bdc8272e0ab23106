"""Count sessions: one associate, one run, any device; at most one active session per user."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from counts.models import CountRun, CountSession, RunState, SessionState
from counts.services.planning import count_run_start


class ActiveSessionExists(Exception):
    """The user already has an active session; it must be paused or submitted first."""

    def __init__(self, session: CountSession) -> None:
        super().__init__(f"session {session.pk} on run {session.run_id} is already active for this user")
        self.session = session


class RunNotCountable(Exception):
    """The run is not open for counting (draft is fine: it starts; review, closed, cancelled are not)."""


COUNTABLE_RUN_STATES = (RunState.DRAFT, RunState.SCHEDULED, RunState.IN_PROGRESS)


def _active_session_of(user: AbstractBaseUser, *, excluding: int | None = None) -> CountSession | None:
    sessions = CountSession.objects.filter(user=user, state=SessionState.ACTIVE)
    if excluding is not None:
        sessions = sessions.exclude(pk=excluding)
    return sessions.first()


def count_session_start(
    *, run: CountRun, user: AbstractBaseUser, device_id: str, is_recount: bool = False
) -> CountSession:
    """Open a session for `user` on `run` from a device; the run starts if it had not yet.

    The one-active-session rule is the database's: two simultaneous starts cannot both win.
    """
    existing = _active_session_of(user)
    if existing is not None:
        raise ActiveSessionExists(existing)
    try:
        with transaction.atomic():
            run = CountRun.objects.select_for_update().get(pk=run.pk)
            if run.state not in COUNTABLE_RUN_STATES:
                raise RunNotCountable(f"run {run.pk} is {run.get_state_display().lower()}; it can't be counted")
            if run.state != RunState.IN_PROGRESS:
                run = count_run_start(run=run, actor=user)
            session = CountSession(
                organization_id=run.organization_id,
                run=run,
                user=user,
                device_id=device_id,
                is_recount=is_recount,
                last_activity_at=timezone.now(),
            )
            session._history_user = user
            session.save()
            return session
    except IntegrityError:
        winner = _active_session_of(user)
        if winner is None:
            raise
        raise ActiveSessionExists(winner) from None


def _locked(session: CountSession) -> CountSession:
    return CountSession.objects.select_for_update().select_related("run").get(pk=session.pk)


@transaction.atomic
def count_session_pause(*, session: CountSession, actor: AbstractBaseUser) -> CountSession:
    """Pause so the associate can resume later, here or on another device."""
    session = _locked(session)
    if session.state == SessionState.PAUSED:
        return session
    session.pause()
    session._history_user = actor
    session.save()
    return session


def count_session_resume(*, session: CountSession, actor: AbstractBaseUser, device_id: str) -> CountSession:
    """Make the session active on `device_id` (resuming an active session moves it to that device).

    Refused while the user has another active session.
    """
    try:
        with transaction.atomic():
            session = _locked(session)
            other = _active_session_of(session.user, excluding=session.pk)
            if other is not None:
                raise ActiveSessionExists(other)
            if session.run.state not in COUNTABLE_RUN_STATES:
                raise RunNotCountable(f"run {session.run_id} is {session.run.get_state_display().lower()}")
            session.resume()
            session.device_id = device_id
            session.last_activity_at = timezone.now()
            session._history_user = actor
            session.save()
            return session
    except IntegrityError:
        other = _active_session_of(session.user, excluding=session.pk)
        if other is None:
            raise
        raise ActiveSessionExists(other) from None


@transaction.atomic
def count_session_submit(*, session: CountSession, actor: AbstractBaseUser) -> CountSession:
    """Hand the session's count in; later scans for it are refused. Submitting twice is harmless."""
    session = _locked(session)
    if session.state == SessionState.SUBMITTED:
        return session
    session.submit()
    session.submitted_at = timezone.now()
    session._history_user = actor
    session.save()
    return session
