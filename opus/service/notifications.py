"""Notifications: what to tell whom when a job changes phase or a definition is proposed.

* A job created with ``NOTIFY=email`` sends its owner an e-mail when it ends (COMPLETED, ERROR or
  ABORTED): its phase, times, error and the links to its page and results.  ``NOTIFY=digest`` puts
  the same text in the owner's daily digest (``MAIL_DIGEST_HOUR``).  The address is the owner's
  ``users.email`` (``PUT /notifications``).
* A job created with ``WEBHOOK=<url>`` has a JSON document POSTed to that URL at each phase change
  (EXECUTING and its end): ``{"jobId", "jobName", "phase", "href", "time"}``.
* A proposed job definition sends every admin with an address, and ``MAIL_ADMINS``, an e-mail.

Nothing is sent inside the request that caused it: messages go to the outbox
(``opus.storage.outbox``), written once by the process whose compare-and-set moved the job, and
``opus.events.mail.Outbox`` delivers them.
"""

from __future__ import annotations

import json
import logging

from opus.events.mail import Outbox
from opus.listen import callback_base
from opus.settings import Settings
from opus.storage import JobStore
from opus.storage.outbox import OutboxStore
from opus.timeutil import format_instant, utcnow
from opus.uws import FINAL, Job, Phase

log = logging.getLogger(__name__)
#: The control parameters that ask for notifications (stored as job parameters of these names).
NOTIFY = "NOTIFY"
WEBHOOK = "WEBHOOK"
NOTIFY_MODES = ("email", "digest", "none")


def public_base(settings: Settings) -> str:
    """The base URL links in messages use: BASE_URL, else the address the server listens on."""
    return (settings.BASE_URL or callback_base(settings) or "http://localhost").rstrip("/")


def uid_of(owner_key: str | None) -> int | None:
    """The user id of an owner key ``user:<uid>``; None for anonymous or front-end owners."""
    if owner_key and owner_key.startswith("user:") and owner_key[5:].isdigit():
        return int(owner_key[5:])
    return None


class Notifications:
    """Writes notifications to the outbox and wakes its sender."""

    def __init__(self, settings: Settings, store: JobStore, outbox: OutboxStore, sender: Outbox) -> None:
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.sender = sender

    @classmethod
    def build(cls, settings: Settings, store: JobStore) -> Notifications:
        """The notifications of one process, on the JobStore's database, with their own sender."""
        outbox = OutboxStore(store.engine)
        return cls(settings, store, outbox, Outbox(settings, outbox))

    def start(self) -> None:
        """Start the background sender (a serving process; several may run, each message goes once)."""
        self.sender.start()

    def stop(self) -> None:
        self.sender.stop()

    def phase_changed(self, job_id: str, phase: Phase) -> None:
        """A job moved to ``phase`` (called once, by the process that moved it)."""
        values = self.outbox.job_settings(job_id, (NOTIFY, WEBHOOK))
        mail = phase in FINAL and values.get(NOTIFY) in ("email", "digest")
        hook = bool(values.get(WEBHOOK)) and self.settings.WEBHOOKS
        job = self.store.get(job_id) if mail or hook else None
        if job is None:
            return
        wrote = False
        if mail:
            wrote = self._job_mail(job, values[NOTIFY])
        if hook:
            self.outbox.add("webhook", values[WEBHOOK], f"job {job_id} {phase.value}", json.dumps({
                "jobId": job_id, "jobName": job.jobname, "phase": phase.value, "runId": job.run_id,
                "href": f"{public_base(self.settings)}/rest/{job.jobname}/{job_id}",
                "time": format_instant(utcnow())}))
            wrote = True
        if wrote:
            self.sender.wake()

    def _job_mail(self, job: Job, mode: str) -> bool:
        uid = uid_of(job.owner_key)
        address = self.outbox.email_of(uid) if uid is not None else None
        if address is None:
            log.warning("job %s asked for %s but its owner has no confirmed e-mail address", job.job_id, mode)
            return False
        subject, body = job_end_text(job, public_base(self.settings))
        self.outbox.add("mail" if mode == "email" else "digest", address, subject, body)
        return True

    def definition_proposed(self, name: str, proposer: str, digest: str = "") -> None:
        """Tell the admins a job definition waits for their validation (never fails the proposal)."""
        try:
            self._tell_admins(name, proposer, digest)
        except Exception:
            log.exception("telling the admins of the proposal %r failed", name)

    def _tell_admins(self, name: str, proposer: str, digest: str) -> None:
        to = list(dict.fromkeys([*self.settings.MAIL_ADMINS, *self.outbox.admin_emails()]))
        if not to or not self.settings.SMTP_HOST:
            return
        base = public_base(self.settings)
        body = (f"{proposer} proposed the job definition {name!r} on {base}.\n\n"
                f"Review it:   {base}/jdl/proposals/{name}\n"
                f"Validate it: {base}/web/admin (proposals)\n"
                + (f"Digest of the proposal: {digest}\n" if digest else "")
                + "\nThis message was sent by OPUS because you are an administrator of this server.\n")
        for address in to:
            self.outbox.add("mail", address, f"OPUS: job definition {name!r} proposed by {proposer}", body)
        self.sender.wake()


def job_end_text(job: Job, base: str) -> tuple[str, str]:
    """The subject and text of the e-mail (or digest entry) telling a job's owner it ended."""
    label = f"{job.jobname} {job.job_id}" + (f" ({job.run_id})" if job.run_id else "")
    lines = [f"Your OPUS job {label} ended: {job.phase.value}.", "",
             f"Created:  {format_instant(job.creation_time)}",
             f"Started:  {format_instant(job.start_time) or '-'}",
             f"Ended:    {format_instant(job.end_time) or '-'}"]
    if job.error is not None:
        lines += [f"Error:    {job.error.message[:500]}"]
    lines += ["", f"Job page: {base}/web/jobs/{job.jobname}/{job.job_id}",
              f"UWS:      {base}/rest/{job.jobname}/{job.job_id}"]
    if job.results:
        lines += ["", "Results:"] + [f"  {r.result_id}: {base}/rest/{job.jobname}/{job.job_id}/results/"
                                     f"{r.result_id}" for r in job.results]
    lines += ["", "You get this message because the job was created with NOTIFY."]
    return f"OPUS: job {label} {job.phase.value}", "\n".join(lines) + "\n"
