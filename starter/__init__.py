"""What backend services call: event intake (``starter.intake`` for Python backends, the
HTTP endpoints in ``triggermail.web.segment``), the Segment event models
(``starter.events``), the routing rules that turn a stored event into journey starts
and exits (``starter.routing``) and what carries them to Temporal (``starter.starting``).
"""
