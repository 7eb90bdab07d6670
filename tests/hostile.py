"""Inputs built to attack the code under test."""

import os
from pathlib import Path


class CodeRunningPickle:
    """Unpickling it runs ``touch marker``: the marker file existing afterwards means the
    loader executed code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
