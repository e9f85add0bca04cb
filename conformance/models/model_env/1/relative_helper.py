"""Imported relatively (from .relative_helper import ...): model.py is the module <version>.model."""


def where():
    return f"relative import as {__name__}"
