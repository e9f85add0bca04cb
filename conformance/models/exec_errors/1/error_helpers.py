"""A helper module in the version directory, so that tracebacks cross files."""


def lookup(table, key):
    return table[key]


def raise_from_helper():
    return lookup({}, "nested key")
