"""`usernet drill`: packetdrill-dialect scripts replayed against usernet in virtual time."""

from usernet.drill.parser import ScriptError, parse_script
from usernet.drill.runner import Result, run_script

__all__ = ["Result", "ScriptError", "parse_script", "run_script"]
