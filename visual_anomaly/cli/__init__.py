"""Command-line entry points; imported by nothing else in the package."""
