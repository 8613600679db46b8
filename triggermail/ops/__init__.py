"""Operations: the ``triggermail`` CLI, the dev stack and its demo shop, e-mail previews,
operators' journey tools and the Temporal Schedules.

The top of the package: it may use every layer beneath, and nothing imports it.
"""
