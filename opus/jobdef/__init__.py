"""Job definitions: what a job is, its parameters, inputs, results and script."""

from opus.jobdef.model import GeneratedDescription, JobDefinition, ParameterDescription, UsedDescription
from opus.jobdef.registry import JobDefinitionRegistry
__all__ = ["JobDefinition", "ParameterDescription", "UsedDescription", "GeneratedDescription",
           "JobDefinitionRegistry"]
