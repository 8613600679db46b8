"""The HTTP app: the Segment endpoints and their assembly, the SendGrid webhook, one-click
unsubscribe, the survey, the outbox viewer and the customer card.

Above ``starter/`` (it hands events to the intake) and below ``worker.py`` and the CLI.
"""
