"""One exception type for bad input data, so the CLI can print it as a single clear paragraph."""


class DataError(ValueError):
    """Bad input: names the file / tree / branch / option, what was found and what was expected."""
