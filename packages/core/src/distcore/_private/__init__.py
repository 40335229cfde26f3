"""distcore's internals (no public API here)."""

import os as _os

# gRPC's fork support restarts its pollers in a forked child. A child forked while other threads
# are inside gRPC (every distcore process has such threads) could then abort before it ran a line
# ("epoll_wait error: Bad file descriptor", SIGABRT): a torch DataLoader's worker processes, a
# subprocess started with a preexec_fn. distcore never uses gRPC in a forked child, so it turns the
# handlers off, before grpc is first imported, unless the user chose otherwise.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
