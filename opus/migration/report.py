"""What a migration did, would do (dry run), and could not do."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Report:
    """Lines of what was done (or, in a dry run, would be done), skipped and refused."""

    dry_run: bool = False
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)      # already there: a second run changes nothing
    notes: list[str] = field(default_factory=list)        # imported, with something to know
    failed: list[str] = field(default_factory=list)       # not imported, and why
    counts: dict[str, int] = field(default_factory=dict)

    def did(self, kind: str, text: str) -> None:
        self.done.append(text)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def skip(self, text: str) -> None:
        self.skipped.append(text)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def fail(self, text: str) -> None:
        self.failed.append(text)

    def text(self) -> str:
        """The report, as printed by ``opus migrate`` and kept beside the data."""
        head = "opus migrate (dry run: nothing was written)" if self.dry_run else "opus migrate"
        out = [head]
        for title, lines in (("Imported" if not self.dry_run else "Would import", self.done),
                             ("Notes", self.notes), ("Already there (unchanged)", self.skipped),
                             ("Not imported", self.failed)):
            if lines:
                out.append(f"{title} ({len(lines)}):")
                out.extend(f"  {line}" for line in lines)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items())) or "nothing new"
        verb = "would import" if self.dry_run else "imported"
        out.append(f"Summary: {verb} {summary}; {len(self.skipped)} already there; "
                   f"{len(self.failed)} not imported" + (" (listed above)" if self.failed else ""))
        return "\n".join(out) + "\n"
