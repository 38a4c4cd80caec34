from collections.abc import Iterator

from tests.malformed.corpus import Case


def cases() -> Iterator[Case]:
    return iter(())
