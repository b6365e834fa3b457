"""The job service layer: the UWS operations, submission parsing, completion, maintenance."""
