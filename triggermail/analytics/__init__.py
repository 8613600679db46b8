"""What journeys earn: attribution, the report, and the experiments' statistics.

Reads the store only (the base beneath it); the experiments activity and the CLI use it.
"""
