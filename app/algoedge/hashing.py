"""What one password hash costs in memory, and so how many an API process may compute at once.

Pure arithmetic on the standard library, shared by the API (its argon2 parameters and the
default of ``ALGOEDGE_PASSWORD_HASH_CONCURRENCY``) and the operator (which sets that variable
from the API container's memory limit), so the limit and the bound cannot disagree.

An argon2id hash holds its whole memory cost (64 MiB) for as long as it runs, in whichever thread
runs it. An API process needs about 120 MiB for everything else when idle (measured: Python,
aiohttp, socket.io, redis, psycopg2, pydantic); :data:`API_BASE_MEMORY_MIB` reserves twice that,
for sockets, request buffers and allocator slack. The rest of the container's limit is for
hashes::

    concurrency = max(1, (memory limit MiB - 256) // 64)
    512 Mi -> 4, 768 Mi -> 8, 1 Gi -> 12

so at most ``256 + 64 x concurrency`` MiB is in use while every hashing slot is busy.
"""

from __future__ import annotations

from typing import Final

#: argon2id parameters: argon2-cffi's defaults, RFC 9106's "low memory" profile. A hash stored
#: with other parameters is verified with its own (they are part of the encoded hash).
ARGON2_TIME_COST: Final = 3
ARGON2_MEMORY_KIB: Final = 65_536
ARGON2_PARALLELISM: Final = 4

#: Memory one running hash (or verification) holds.
HASH_MEMORY_MIB: Final = ARGON2_MEMORY_KIB // 1024
#: Memory reserved for the API process besides its hashes (about twice its measured idle size).
API_BASE_MEMORY_MIB: Final = 256
#: The container memory limit the app's default concurrency is sized for (the small profile's).
DEFAULT_MEMORY_LIMIT_MIB: Final = 512


def hash_concurrency_for(memory_limit_mib: int) -> int:
    """Hashes an API process with ``memory_limit_mib`` may compute at once (at least one)."""
    return max(1, (memory_limit_mib - API_BASE_MEMORY_MIB) // HASH_MEMORY_MIB)


def peak_memory_mib(concurrency: int) -> int:
    """The memory an API process is sized to need with ``concurrency`` hashes running."""
    return API_BASE_MEMORY_MIB + concurrency * HASH_MEMORY_MIB


#: ``ALGOEDGE_PASSWORD_HASH_CONCURRENCY`` when unset: sized for a 512 MiB container.
DEFAULT_HASH_CONCURRENCY: Final = hash_concurrency_for(DEFAULT_MEMORY_LIMIT_MIB)
