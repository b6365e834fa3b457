"""The control parameters every job takes besides its definition's own (UWS, DALI and SLURM).

Listed with each definition (``controlParameters`` in JSON, the WADL request and a VOTable GROUP)
so that clients and forms know them; ``JobList.parse`` checks them on every creation and update.
"""

from __future__ import annotations

from opus.jobdef.slurm_options import OPTIONS, PREFIX
from opus.jobdef.model import ParameterDescription
from opus.settings import Settings
_SLURM_HELP = {
    "partition": ("string", "SLURM partition to run in"),
    "account": ("string", "SLURM account charged"),
    "qos": ("string", "SLURM quality of service"),
    "nodes": ("int", "Number of nodes"),
    "ntasks": ("int", "Number of tasks"),
    "cpus_per_task": ("int", "CPUs per task"),
    "ntasks_per_node": ("int", "Tasks per node"),
    "mem": ("string", "Memory per node, e.g. 500M, 4G or 1gb"),
}


def parameters(settings: Settings) -> list[ParameterDescription]:
    """The control parameters of this server (SLURM ones only when it runs jobs with SLURM)."""
    cap = settings.MAX_EXECUTION_DURATION or None
    out = [
        ParameterDescription("RUNID", "string", description="Your own label for the job (at most 64 characters)"),
        ParameterDescription("EXECUTIONDURATION", "int", min=0, max=cap, unit="s",
                             description="Longest run time in seconds; 0 asks for no limit"
                             + (f" (at most {cap} here)" if cap else "")),
        ParameterDescription("DESTRUCTION", "dateTime",
                             description="When the job and its results are deleted (ISO 8601)"),
        ParameterDescription("PHASE", "string", options=["RUN"],
                             description="RUN at creation queues the job at once"),
        ParameterDescription("QUOTE", "dateTime",
                             description="Read-only: when the job is expected to end if started now"),
    ]
    if settings.SMTP_HOST:
        out.append(ParameterDescription(
            "NOTIFY", "string", options=["none", "email"] + (["digest"] if settings.MAIL_DIGEST_HOUR is not None else []),
            description="email: tell me by e-mail when the job ends (my address: PUT /notifications); "
                        "digest: in my daily digest"))
    if settings.WEBHOOKS and settings.INPUT_URL_HOSTS:
        out.append(ParameterDescription("WEBHOOK", "anyURI",
                                        description="A URL that receives a JSON POST at each phase change"))
    if settings.MANAGER == "slurm":
        for option in OPTIONS:
            kind, text = _SLURM_HELP.get(option, ("string", option))
            desc = ParameterDescription(PREFIX + option, kind, description=text)
            if option == "partition" and settings.SLURM_PARTITIONS:
                desc.options = list(settings.SLURM_PARTITIONS)
            if kind == "int":
                desc.min, desc.max = 1, 100000
            out.append(desc)
    return out
