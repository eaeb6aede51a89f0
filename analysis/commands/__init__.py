"""The analysis commands: `tpt report`, `tpt stats`, `tpt estimate`, `tpt show`, `tpt publish`."""
