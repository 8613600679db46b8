"""E-mail templates (package data).

``<journey>/<step>.jinja`` holds a step's subject, preheader and content once;
``layout/`` renders it as HTML and as plain text; ``locales/<locale>/LC_MESSAGES/
messages.po`` translates its copy. See docs/emails.md.
"""
