"""E-mail templates: ``<locale>/<journey>/<step>.{subject.txt,html,txt}`` (package data)."""
