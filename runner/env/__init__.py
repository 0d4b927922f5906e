"""Prepared environments: a repo's dependencies installed once, with network, in a set-up container of the sandbox
image, then frozen (`docker commit`) into a local image `smol-env:<repo>-<hash of the inputs>`. The agent phase,
`smol exec` and re-verification start from that image with network off.

- `plan`: what a repo declares (its own `.smol/setup.sh`, or detection for Python, Go, Node) and the script that
  installs it; no Docker.
- `key`: the cache key and tag, a hash of the defining files, the script and the base image; no Docker.
- `tools`: uv's static binary, fetched once with the host's pip and cached in the user's cache directory.
- `build`: runs the set-up container through the engine facade and commits it.
- `store`: the images that exist, `show`/`rm`/gc, and the user's per-repo consent.
- `service`: what `smol run`/`smol exec` do when a repo declares dependencies (build when allowed, else one line).
"""
