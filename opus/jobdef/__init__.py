"""Job definitions: what a job is, its parameters, inputs, results and script."""

from .model import GeneratedDescription, JobDefinition, ParameterDescription, UsedDescription
from .registry import JobDefinitionRegistry

__all__ = ["JobDefinition", "ParameterDescription", "UsedDescription", "GeneratedDescription",
           "JobDefinitionRegistry"]
