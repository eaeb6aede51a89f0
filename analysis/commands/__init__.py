"""The analysis commands: `tpt report`, `tpt stats`, `tpt estimate`."""
